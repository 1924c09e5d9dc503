//! qmail-smtpd: golden transcripts, the open-relay and smuggling batteries, limits (long
//! lines, 100,000 recipients, oversized DATA, flat memory), RBL and MX checks against a fake
//! DNS server, and real clients (swaks, Python's smtplib) under ucspi-tcp's tcpserver.
//!
//! # Transcript format (`tests/fixtures/smtpd-*.smtp`)
//!
//! One directive per line; the file is one session of qmail-smtpd run with pipes (every
//! client line is sent at once: PIPELINING), then its replies are compared line by line.
//!
//! ```text
//! # text                 a comment (any `#` line that is not a directive below)
//! # env NAME=value       set a variable for qmail-smtpd (default: TCPREMOTEIP=192.0.2.1,
//!                        TCPREMOTEHOST=client.example.net, TCPLOCALIP=127.0.0.1,
//!                        TCPLOCALHOST=mx.example.org, DNSCACHEIP=<the fake DNS server>)
//! # unset NAME           remove a default variable
//! # control name=value   write control/name (`\n` in value is a newline); by default
//!                        me=mx.example.org, locals=mx.example.org+example.org,
//!                        rcpthosts=example.org+.sub.example.org+relay.example.net
//! # rm name              remove control/name
//! # exit N               expected exit code (default 0)
//! # queued N             expected number of messages in queue/todo afterwards
//! # rcpts A B ...        the recipients of the last queued message
//! # sender A             the sender of the last queued message
//! # contains TEXT        the last queued message contains TEXT
//! C: text                sent, followed by CRLF
//! R: text                sent raw: `\r`, `\n`, `\0`, `\\` and `\xHH` escapes, nothing added
//! S: text                one expected reply line (without its CRLF); `*` matches any run
//!                        of characters
//! ```
//!
//! The replies must match exactly and completely: a missing or extra line fails, and every
//! reply line must end in CRLF.

use crate::harness::{assert_ok, bin, code, run_with, spawn_piped, Guard, Sandbox};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Every variable qmail-smtpd reads, removed before each run so that tests are hermetic.
const KNOBS: &[&str] = &[
    "TCPREMOTEIP",
    "TCPREMOTEHOST",
    "TCPREMOTEINFO",
    "TCPLOCALIP",
    "TCPLOCALHOST",
    "RELAYCLIENT",
    "DATABYTES",
    "LOGLEVEL",
    "550GREETING",
    "421GREETING",
    "BLOCKRELAYPROBE",
    "NOBOUNCE",
    "NOLOCAL",
    "RBL",
    "RBLONLYHEADER",
    "REJECTEXEC",
    "RETURNMXCHECK",
    "SANITYCHECK",
    "SMTP550DISCONNECT",
    "SENDERCHECK",
    "MAXRCPTCOUNT",
    "TARPITCOUNT",
    "TARPITDELAY",
    "AUTHREQUIRED",
    "AUTHORIZED",
    "RCPTCHECK",
    "LDAPSOFTOK",
    "BADRCPTDELAY",
    "SMTPAUTH",
    "AUTHPREPEND",
    "NOPBS",
    "DNSCACHEIP",
];

/// A sandbox with the transcripts' default controls.
fn sandbox() -> Sandbox {
    let sb = Sandbox::new();
    sb.control("rcpthosts", "example.org\n.sub.example.org\nrelay.example.net\n");
    sb
}

/// qmail-smtpd on `sb` with the default environment.
pub fn smtpd(sb: &Sandbox) -> Command {
    let mut cmd = sb.cmd("qmail-smtpd");
    for k in KNOBS {
        cmd.env_remove(k);
    }
    cmd.env("TCPREMOTEIP", "192.0.2.1")
        .env("TCPREMOTEHOST", "client.example.net")
        .env("TCPLOCALIP", "127.0.0.1")
        .env("TCPLOCALHOST", "mx.example.org")
        .env("DNSCACHEIP", fake_dns().to_string());
    cmd
}

/// Glob match: `*` matches any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

fn unescape(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'r' => out.push(b'\r'),
                b'n' => out.push(b'\n'),
                b'0' => out.push(0),
                b'\\' => out.push(b'\\'),
                b'x' if i + 3 < b.len() + 1 => {
                    let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 4;
                    continue;
                }
                other => panic!("bad escape \\{}", other as char),
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Run one transcript; the error says what differed, in full.
fn run_transcript(path: &Path) -> Result<(), String> {
    let sb = sandbox();
    let cmd = smtpd(&sb);
    run_transcript_on(&sb, cmd, path)
}

/// Run one transcript with `cmd` (qmail-smtpd on `sb`, see [`smtpd`]).
pub fn run_transcript_on(sb: &Sandbox, mut cmd: Command, path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut input = Vec::new();
    let mut expected = Vec::new();
    let mut exit = 0;
    let mut checks = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("C: ").or(line.strip_prefix("C:")) {
            input.extend_from_slice(rest.as_bytes());
            input.extend_from_slice(b"\r\n");
        } else if let Some(rest) = line.strip_prefix("R: ") {
            input.extend_from_slice(&unescape(rest));
        } else if let Some(rest) = line.strip_prefix("S: ") {
            expected.push(rest.to_string());
        } else if let Some(d) = line.strip_prefix("# env ") {
            let (k, v) = d.split_once('=').unwrap_or((d, ""));
            cmd.env(k, v);
        } else if let Some(k) = line.strip_prefix("# unset ") {
            cmd.env_remove(k.trim());
        } else if let Some(d) = line.strip_prefix("# control ") {
            let (k, v) = d.split_once('=').expect("# control name=value");
            sb.control(k, &v.replace("\\n", "\n"));
        } else if let Some(k) = line.strip_prefix("# rm ") {
            let _ = std::fs::remove_file(sb.home.join("control").join(k.trim()));
        } else if let Some(n) = line.strip_prefix("# exit ") {
            exit = n.trim().parse().unwrap();
        } else if line.starts_with("# queued ")
            || line.starts_with("# rcpts ")
            || line.starts_with("# sender ")
            || line.starts_with("# contains ")
        {
            checks.push(line[2..].to_string());
        } else if !(line.is_empty() || line.starts_with('#')) {
            panic!("{}: unknown line {line:?}", path.display());
        }
    }
    let out = run_with(&mut cmd, &input);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut problems = Vec::new();
    if !stdout.is_empty() && !stdout.ends_with("\r\n") {
        problems.push("the last reply does not end in CRLF".to_string());
    }
    let got: Vec<&str> = stdout.split_terminator("\r\n").collect();
    if got.iter().any(|l| l.contains('\n')) {
        problems.push("a reply line ends in a bare LF".to_string());
    }
    let n = got.len().max(expected.len());
    for i in 0..n {
        match (expected.get(i), got.get(i)) {
            (Some(e), Some(g)) if glob(e, g) => {}
            (e, g) => problems.push(format!("line {}: expected {e:?}, got {g:?}", i + 1)),
        }
    }
    if code(&out) != exit {
        problems.push(format!("exit code {} instead of {exit}", code(&out)));
    }
    let todo = sb.todo();
    for check in &checks {
        let (what, arg) = check.split_once(' ').unwrap();
        let last = todo.last();
        let ok = match what {
            "queued" => todo.len() == arg.trim().parse::<usize>().unwrap(),
            "rcpts" => last.is_some_and(|m| m.recipients() == arg.split(' ').collect::<Vec<_>>()),
            "sender" => last.is_some_and(|m| m.sender() == arg),
            "contains" => last.is_some_and(|m| m.text().contains(arg)),
            _ => unreachable!(),
        };
        if !ok {
            problems.push(format!(
                "check `{check}` failed; queued: {:#?}",
                todo.iter().map(|m| (&m.records, m.text())).collect::<Vec<_>>()
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{}:\n  {}\nexpected:\n{}\ngot:\n{}\nstderr:\n{}",
        path.display(),
        problems.join("\n  "),
        expected.join("\n"),
        got.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// The transcripts `tests/fixtures/<prefix>*.smtp`, sorted.
pub fn fixtures(prefix: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(prefix) && name.ends_with(".smtp")
        })
        .collect();
    files.sort();
    files
}

/// Run `files` with `run` on four threads; fails listing every transcript that failed.
pub fn run_all(files: &[PathBuf], run: impl Fn(&Path) -> Result<(), String> + Sync) {
    let run = &run;
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(files.len().div_ceil(4).max(1))
            .map(|chunk| {
                scope.spawn(move || chunk.iter().filter_map(|f| run(f).err()).collect::<Vec<_>>())
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert!(
        failures.is_empty(),
        "{} transcript(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn transcripts() {
    let files = fixtures("smtpd-");
    assert!(files.len() >= 30, "the transcripts are missing: {files:?}");
    run_all(&files, run_transcript);
}

/// Run a session fed all at once; the replies as lines.
fn session(sb: &Sandbox, env: &[(&str, &str)], input: &[u8]) -> (Vec<String>, i32) {
    let mut cmd = smtpd(sb);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run_with(&mut cmd, input);
    let text = String::from_utf8_lossy(&out.stdout);
    (text.split_terminator("\r\n").map(str::to_string).collect(), code(&out))
}

fn start(rcpt: &str) -> String {
    format!("EHLO c\r\nMAIL FROM:<a@client.example.net>\r\nRCPT TO:<{rcpt}>\r\n")
}

/// The address forms an open relay would route elsewhere.
const RELAY_FORMS: &[&str] = &[
    "victim@elsewhere.example",
    "victim%elsewhere.example@example.org",
    "elsewhere.example!victim@example.org",
    "elsewhere.example!victim",
    "@example.org:victim@elsewhere.example",
    "@example.org,@mx.example.org:victim@example.org",
    "\"victim@elsewhere.example\"@example.org",
    "\"victim%elsewhere.example\"@example.org",
    "victim\\@elsewhere.example@example.org",
    "victim@elsewhere.example@example.org",
    "victim@example.org@elsewhere.example",
    "victim@elsewhere.example.",
    "victim@[192.0.2.99]",
    "victim@EXAMPLE.org.elsewhere.example",
    "victim@xexample.org",
];

#[test]
fn open_relay_battery() {
    let sb = sandbox();
    for form in RELAY_FORMS {
        let input = format!("{}QUIT\r\n", start(form));
        let (lines, _) = session(&sb, &[], input.as_bytes());
        let reply = &lines[lines.len() - 2];
        assert!(reply.starts_with("553 5.7.1 "), "{form}: not refused: {lines:#?}");
    }
    assert!(sb.todo().is_empty());
    // the same forms from a relay client are accepted (and the RELAYCLIENT suffix appended)
    for form in RELAY_FORMS {
        let input = format!("{}QUIT\r\n", start(form));
        let (lines, _) = session(&sb, &[("RELAYCLIENT", "")], input.as_bytes());
        assert_eq!(lines[lines.len() - 2], "250 2.1.5 ok", "{form}: {lines:#?}");
    }
    // the ordinary local forms are accepted without RELAYCLIENT
    for form in
        ["u@example.org", "u@EXAMPLE.ORG", "u@a.sub.example.org", "postmaster", "u@mx.example.org"]
    {
        let input = format!("{}QUIT\r\n", start(form));
        let (lines, _) = session(&sb, &[], input.as_bytes());
        assert_eq!(lines[lines.len() - 2], "250 2.1.5 ok", "{form}: {lines:#?}");
    }
}

/// Each malformed end-of-data sequence, with a second message pipelined after it.
#[test]
fn smuggling_battery() {
    let sequences: &[&[u8]] = &[
        b"\n.\n",
        b"\r.\r",
        b"\r.\n",
        b"\n.\r",
        b"\n.\r\n",
        b"\r\n.\n",
        b"\r.\r\n",
        b"\r\n.\r",
        b"\n\0.\n",
        b"\r\n\0.\r\n",
        b"\r\n.\0\r\n",
        b"\n.\0\n",
        b"\0\n.\n",
        b"\r\0\n.\r\0\n",
        b"\r\n.\r\0\n",
        b"\n.\n\r\n",
        b"\r\r\n.\r\r\n",
    ];
    for seq in sequences {
        let sb = sandbox();
        let mut input = start("u@example.org").into_bytes();
        input.extend_from_slice(b"DATA\r\nSubject: first\r\n\r\nfirst body");
        input.extend_from_slice(seq);
        input.extend_from_slice(
            b"MAIL FROM:<smuggler@evil.example>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n\
              Subject: smuggled\r\n\r\nsmuggled\r\n.\r\n",
        );
        input.extend_from_slice(b"\r\n.\r\nQUIT\r\n");
        let (lines, _) = session(&sb, &[], &input);
        let todo = sb.todo();
        let shown = format!("{:?}: {lines:#?} {todo:#?}", String::from_utf8_lossy(seq));
        assert!(todo.len() <= 1, "{shown}");
        for m in &todo {
            assert_eq!(m.sender(), "a@client.example.net", "{shown}");
            assert!(m.text().contains("first body"), "{shown}");
            assert!(!m.text().starts_with("Subject: smuggled"), "{shown}");
        }
        let queued = lines.iter().filter(|l| l.contains(" qp ")).count();
        assert!(queued <= 1, "{shown}");
        assert!(!lines.iter().any(|l| l.contains("smuggler")), "{shown}");
    }
}

/// CRLF.CRLF inside the body of a well-formed message is data when dot-stuffed.
#[test]
fn dot_stuffing_round_trip() {
    let sb = sandbox();
    let mut input = start("u@example.org").into_bytes();
    input.extend_from_slice(
        b"DATA\r\nSubject: dots\r\n\r\n..\r\n...x\r\n.y\r\nnul\0byte\r\n.\r\nQUIT\r\n",
    );
    let (lines, code) = session(&sb, &[], &input);
    assert_eq!(code, 0, "{lines:#?}");
    let todo = sb.todo();
    assert_eq!(todo.len(), 1, "{lines:#?}");
    assert!(
        todo[0].mess.ends_with(b"Subject: dots\n\n.\n..x\ny\nnul\0byte\n"),
        "{:?}",
        todo[0].text()
    );
}

#[test]
fn hop_count() {
    let sb = sandbox();
    for (hops, want) in [(99, "250 2.0.0 ok "), (100, "554 5.4.6 ")] {
        let mut input = start("u@example.org").into_bytes();
        input.extend_from_slice(b"DATA\r\n");
        for i in 0..hops {
            let name = if i % 2 == 0 { "Received" } else { "delivered-to" };
            input.extend_from_slice(format!("{name}: hop {i}\r\n").as_bytes());
        }
        input.extend_from_slice(b"\r\nbody\r\n.\r\nQUIT\r\n");
        let (lines, _) = session(&sb, &[], &input);
        assert!(lines[lines.len() - 2].starts_with(want), "{hops}: {lines:#?}");
    }
    assert_eq!(sb.todo().len(), 1);
}

#[test]
fn header_line_too_long() {
    let sb = sandbox();
    let mut input = start("u@example.org").into_bytes();
    input.extend_from_slice(b"DATA\r\nSubject: ");
    input.extend_from_slice(&vec![b'x'; 10_001]);
    input.extend_from_slice(b"\r\n\r\nbody\r\n.\r\nQUIT\r\n");
    let (lines, code) = session(&sb, &[], &input);
    assert_eq!(lines.last().map(String::as_str), Some("500 5.5.2 header line too long (#5.5.2)"));
    assert_eq!(code, 1);
    assert!(sb.todo().is_empty());
}

/// The high-water mark of a process's resident memory, in bytes.
fn vm_hwm(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// A running qmail-smtpd fed by a writer thread, its replies read line by line.
struct Live {
    child: Guard,
    replies: BufReader<std::process::ChildStdout>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// dropped to let the writer close qmail-smtpd's input
    release: Option<std::sync::mpsc::Sender<()>>,
}

impl Live {
    fn start(mut cmd: Command, input: impl FnOnce(&mut dyn Write) + Send + 'static) -> Live {
        let (child, mut stdin, stdout) = spawn_piped(&mut cmd);
        let replies = BufReader::new(stdout);
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let writer = std::thread::spawn(move || {
            let mut w = std::io::BufWriter::new(&mut stdin);
            input(&mut w);
            let _ = w.flush();
            drop(w);
            // keep the input open (the process alive) until the test is done with it
            let _ = wait.recv();
        });
        Live { child, replies, writer: Some(writer), release: Some(release) }
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.replies.read_line(&mut l).unwrap();
        assert!(l.ends_with("\r\n"), "reply without CRLF: {l:?}");
        l.truncate(l.len() - 2);
        l
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }

    fn finish(mut self) -> i32 {
        drop(self.release.take());
        if let Some(w) = self.writer.take() {
            w.join().unwrap();
        }
        let mut rest = String::new();
        let _ = self.replies.read_to_string(&mut rest);
        self.child.0.wait().unwrap().code().unwrap_or(-1)
    }
}

const MIB: u64 = 1 << 20;

#[test]
fn two_megabyte_command_line() {
    let sb = sandbox();
    let mut input = b"EHLO c\r\nMAIL FROM:<".to_vec();
    input.extend_from_slice(&vec![b'a'; 2 << 20]);
    input.extend_from_slice(b">\r\nNOOP\r\nQUIT\r\n");
    let (lines, code) = session(&sb, &[], &input);
    assert_eq!(code, 0);
    assert_eq!(
        &lines[lines.len() - 3..],
        ["500 5.5.2 line too long (#5.5.2)", "250 2.0.0 ok", "221 2.0.0 mx.example.org Goodbye."]
    );
}

#[test]
fn hundred_thousand_recipients() {
    const N: usize = 100_000;
    let sb = sandbox();
    let mut cmd = smtpd(&sb);
    cmd.env("RELAYCLIENT", "");
    let mut live = Live::start(cmd, |w| {
        w.write_all(b"EHLO c\r\nMAIL FROM:<a@client.example.net>\r\n").unwrap();
        for i in 0..N {
            if write!(w, "RCPT TO:<r{i}@relay.example.com>\r\n").is_err() {
                return;
            }
        }
        let _ = w.write_all(b"DATA\r\nSubject: many\r\n\r\nhello\r\n.\r\n");
    });
    assert!(live.line().starts_with("220 "));
    while live.line().starts_with("250-") {}
    assert_eq!(live.line(), "250 2.1.0 ok");
    let (mut ok, mut full) = (0, 0);
    for _ in 0..N {
        let l = live.line();
        match l.as_str() {
            "250 2.1.5 ok" => ok += 1,
            "452 4.5.3 too many recipients, send the rest in another message (#4.5.3)" => full += 1,
            other => panic!("unexpected reply {other:?}"),
        }
    }
    assert_eq!((ok, full), (10_000, N - 10_000));
    assert_eq!(live.line(), "354 go ahead");
    let queued = live.line();
    assert!(queued.starts_with("250 2.0.0 ok "), "{queued}");
    let hwm = vm_hwm(live.pid());
    assert!(hwm < 64 * MIB, "VmHWM {hwm}");
    let pid = live.pid();
    let code = live.finish();
    assert_eq!(code, 0, "pid {pid}");
    let todo = sb.todo();
    assert_eq!(todo.len(), 1);
    assert_eq!(todo[0].recipients().len(), 10_000);
    assert_eq!(todo[0].recipients()[9_999], "r9999@relay.example.com");
}

/// A message far beyond databytes is read through and refused; memory stays flat.
#[test]
fn databytes_streaming() {
    const TOTAL: usize = 96 << 20;
    let sb = sandbox();
    sb.control("databytes", "1000000\n");
    let cmd = smtpd(&sb);
    let mut live = Live::start(cmd, |w| {
        w.write_all(
            b"EHLO c\r\nMAIL FROM:<a@client.example.net>\r\nRCPT TO:<u@example.org>\r\nDATA\r\n",
        )
        .unwrap();
        let mut line = vec![b'x'; 998];
        line.extend_from_slice(b"\r\n");
        w.write_all(b"Subject: big\r\n\r\n").unwrap();
        for _ in 0..TOTAL / line.len() {
            if w.write_all(&line).is_err() {
                return;
            }
        }
        let _ = w.write_all(b".\r\nNOOP\r\n");
    });
    assert!(live.line().starts_with("220 "));
    let mut l = live.line();
    while l.starts_with("250-") {
        l = live.line();
    }
    assert_eq!(l, "250 8BITMIME");
    assert_eq!(live.line(), "250 2.1.0 ok");
    assert_eq!(live.line(), "250 2.1.5 ok");
    assert_eq!(live.line(), "354 go ahead");
    assert_eq!(
        live.line(),
        "552 5.3.4 sorry, that message size exceeds my databytes limit (#5.3.4)"
    );
    assert_eq!(live.line(), "250 2.0.0 ok");
    let hwm = vm_hwm(live.pid());
    assert!(hwm < 32 * MIB, "VmHWM {hwm} after {TOTAL} bytes");
    assert_eq!(live.finish(), 0);
    assert!(sb.todo().is_empty());
    // the dropped qmail-queue removes what it wrote (it may still be exiting)
    let clean = crate::harness::wait_until(Duration::from_secs(10), || sb.files("mess").is_empty());
    assert!(clean, "a refused message left {:?}", sb.files("mess"));
}

#[test]
fn timeout() {
    let sb = sandbox();
    sb.control("timeoutsmtpd", "1\n");
    let mut cmd = smtpd(&sb);
    cmd.env("LOGLEVEL", "3");
    let started = Instant::now();
    // the client says EHLO and then nothing, keeping the connection open (Live holds its input
    // until finish): only the 1-second timeout can end the session
    let mut live = Live::start(cmd, |w| {
        w.write_all(b"EHLO c\r\n").unwrap();
    });
    assert!(live.line().starts_with("220 "));
    while live.line().starts_with("250-") {}
    assert_eq!(live.line(), "451 4.4.2 timeout (#4.4.2)");
    assert!(started.elapsed() >= Duration::from_secs(1), "not before the timeout");
    assert_eq!(live.finish(), 1);
}

#[test]
fn loglevel() {
    let sb = sandbox();
    let mut cmd = smtpd(&sb);
    cmd.env("LOGLEVEL", "2");
    let input = format!("{}DATA\r\n\r\nx\r\n.\r\nQUIT\r\n", start("u@example.org"));
    let out = run_with(&mut cmd, input.as_bytes());
    assert_ok(&out, "qmail-smtpd");
    let log = String::from_utf8_lossy(&out.stderr);
    let pid_prefix = "qmail-smtpd ";
    for want in [
        "connection from 192.0.2.1",
        "mail from <a@client.example.net>",
        "rcpt to <u@example.org>",
        "message queued: ok ",
    ] {
        assert!(
            log.lines().any(|l| l.starts_with(pid_prefix) && l.contains(want)),
            "{want}:\n{log}"
        );
    }
    let quiet = run_with(&mut smtpd(&sb), input.as_bytes());
    assert!(quiet.stderr.is_empty());
}

#[test]
fn tarpit() {
    let sb = sandbox();
    let input = format!(
        "{}RCPT TO:<v@example.org>\r\nRCPT TO:<w@example.org>\r\nQUIT\r\n",
        start("u@example.org")
    );
    let started = Instant::now();
    let (lines, _) = session(&sb, &[("TARPITCOUNT", "2"), ("TARPITDELAY", "1")], input.as_bytes());
    assert!(started.elapsed() >= Duration::from_secs(2), "{lines:#?}");
    assert_eq!(lines.iter().filter(|l| *l == "250 2.1.5 ok").count(), 3);
}

#[test]
fn queue_failure_replies() {
    let sb = sandbox();
    // a stand-in queue program that refuses permanently, then one that fails temporarily
    let script = sb.tmp.path().join("qq");
    for (exit, want) in [("31", "554 5.3.0 "), ("53", "451 4.3.0 ")] {
        std::fs::write(&script, format!("#!/bin/sh\ncat >/dev/null\nexit {exit}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let input = format!("{}DATA\r\n\r\nx\r\n.\r\nQUIT\r\n", start("u@example.org"));
        let q = script.to_string_lossy().into_owned();
        let (lines, _) = session(&sb, &[("QMAILQUEUE", q.as_str())], input.as_bytes());
        assert!(lines[lines.len() - 2].starts_with(want), "{exit}: {lines:#?}");
    }
}

// ---------------------------------------------------------------------------------------------
// A fake DNS server for RBL and RETURNMXCHECK (qmail-smtpd asks it through DNSCACHEIP).

fn fake_dns() -> std::net::SocketAddr {
    static ADDR: OnceLock<std::net::SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                if let Some(reply) = dns_reply(&buf[..n]) {
                    let _ = sock.send_to(&reply, from);
                }
            }
        });
        addr
    })
}

fn dns_reply(q: &[u8]) -> Option<Vec<u8>> {
    let mut i = 12;
    let mut labels = Vec::new();
    while *q.get(i)? != 0 {
        let len = usize::from(q[i]);
        labels.push(String::from_utf8_lossy(q.get(i + 1..i + 1 + len)?).to_ascii_lowercase());
        i += 1 + len;
    }
    let name = labels.join(".");
    let qtype = u16::from_be_bytes([*q.get(i + 1)?, *q.get(i + 2)?]);
    let end = i + 5;
    let (rcode, answers): (u8, Vec<(u16, Vec<u8>)>) = match (name.as_str(), qtype) {
        ("fail.example", _) => (2, vec![]),
        ("1.2.0.192.bl.example" | "1.2.0.192.hdr.example" | "1.2.0.192.other.example", 1) => {
            (0, vec![(1, vec![127, 0, 0, 2])])
        }
        ("good.example", 15) => (0, vec![(15, vec![0, 10, 0xc0, 12])]),
        ("good.example" | "amx.example", 1) => (0, vec![(1, vec![192, 0, 2, 10])]),
        ("good.example" | "amx.example" | "1.2.0.192.bl.example", _) => (0, vec![]),
        _ => (3, vec![]),
    };
    let mut r = q[..end].to_vec();
    r[2] |= 0x80;
    r[3] = 0x80 | rcode;
    r[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
    for (t, rdata) in answers {
        r.extend_from_slice(&[0xc0, 12]);
        r.extend_from_slice(&t.to_be_bytes());
        r.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(&rdata);
    }
    Some(r)
}

// ---------------------------------------------------------------------------------------------
// Real clients under ucspi-tcp's tcpserver.

/// qmail-smtpd under `tcpserver -HRl0 127.0.0.1 PORT`, on a free port, ready.
fn tcpserver(sb: &Sandbox, env: &[(&str, &str)]) -> (Guard, u16) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = Command::new("tcpserver");
    for k in KNOBS {
        cmd.env_remove(k);
    }
    cmd.env("QMAILHOME", &sb.home).env_remove("QMAILQUEUE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(["-HRl0", "127.0.0.1", &port.to_string()])
        .arg(bin("qmail-smtpd"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let guard = Guard(cmd.spawn().expect("tcpserver (ucspi-tcp) must be installed"));
    let ready = crate::harness::wait_until(Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(ready, "tcpserver did not start on port {port}");
    (guard, port)
}

#[test]
fn swaks_under_tcpserver() {
    let sb = sandbox();
    let (_server, port) = tcpserver(&sb, &[]);
    let out = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{port}")])
        .args(["--from", "sender@client.example.net", "--to", "u@example.org", "--pipeline"])
        .args(["--header", "Subject: swaks test", "--body", "hello from swaks\n.dot line"])
        .output()
        .expect("swaks must be installed");
    assert_ok(&out, "swaks");
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(transcript.contains("<-  250 2.0.0 ok "), "{transcript}");
    let todo = sb.todo();
    assert_eq!(todo.len(), 1, "{transcript}");
    assert_eq!(todo[0].sender(), "sender@client.example.net");
    assert_eq!(todo[0].recipients(), ["u@example.org"]);
    let text = todo[0].text();
    // -H: no TCPREMOTEHOST (so "unknown"); -l0: TCPLOCALHOST is "0"
    assert!(text.contains("Received: from unknown (HELO "), "{text}");
    assert!(text.contains("          by 0 (qmail-ldap-rs) with SMTP\n"), "{text}");
    assert!(
        text.contains("([127.0.0.1])\n          (envelope-sender <sender@client.example.net>)"),
        "{text}"
    );
    assert!(text.contains("hello from swaks\n.dot line"), "{text}");
    // relaying is refused through the real server too
    let out = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{port}")])
        .args(["--from", "a@client.example.net", "--to", "victim%elsewhere.example@example.org"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("<** 553 5.7.1 "));
    assert_eq!(sb.todo().len(), 1);
}

#[test]
fn python_smtplib_pipelining_under_tcpserver() {
    let sb = sandbox();
    let (_server, port) = tcpserver(&sb, &[("RELAYCLIENT", "")]);
    let script = r#"
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=30)
code, _ = s.ehlo("py.example")
assert code == 250 and s.has_extn("pipelining"), s.esmtp_features
# pipelined MAIL and RCPTs: one write, then the replies in order
s.send(b"MAIL FROM:<py@client.example.net>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@elsewhere.example>\r\nRCPT TO:<bad\r\n")
replies = [s.getreply() for _ in range(4)]
assert [c for c, _ in replies] == [250, 250, 250, 555], replies
code, msg = s.data(b"Subject: py\r\n\r\nline one\r\n.leading dot\r\n")
assert code == 250 and msg.startswith(b"2.0.0 ok "), (code, msg)
# a second message on the same connection, through sendmail()
refused = s.sendmail("py2@client.example.net", ["c@example.org"], b"Subject: two\r\n\r\nsecond\r\n")
assert refused == {}, refused
s.quit()
"#;
    let out = Command::new("python3").args(["-c", script, &port.to_string()]).output().unwrap();
    assert_ok(&out, "python3 smtplib");
    let todo = sb.todo();
    assert_eq!(todo.len(), 2);
    let first = todo.iter().find(|m| m.sender() == "py@client.example.net").unwrap();
    assert_eq!(first.recipients(), ["a@example.org", "b@elsewhere.example"]);
    assert!(first.text().ends_with("Subject: py\n\nline one\n.leading dot\n"), "{}", first.text());
    let second = todo.iter().find(|m| m.sender() == "py2@client.example.net").unwrap();
    assert_eq!(second.recipients(), ["c@example.org"]);
}

/// A self-signed certificate and its key for `mx.example.org`, in one PEM file at
/// `control/smtpcert` (made with openssl, as an administrator would).
fn make_smtpcert(sb: &Sandbox) {
    let dir = sb.tmp.path();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj"])
        .arg("/CN=mx.example.org")
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl must be installed");
    assert_ok(&out, "openssl req");
    let pem = [std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap()].concat();
    std::fs::write(sb.home.join("control/smtpcert"), pem).unwrap();
}

/// Run a Python client `script` against `port`, with `smtplib`, `socket`, `ssl`, `sys` imported
/// and `ctx`, a TLS context that takes any certificate (the tests' are self-signed).
fn python_tls(script: &str, port: u16) -> std::process::Output {
    let preamble = "import smtplib, socket, ssl, sys\nctx = ssl.create_default_context()\n\
                    ctx.check_hostname = False\nctx.verify_mode = ssl.CERT_NONE\n";
    let script = format!("{preamble}{script}");
    Command::new("python3").args(["-c", &script, &port.to_string()]).output().unwrap()
}

/// STARTTLS with Python's smtplib: offered in EHLO, the message travels encrypted and the
/// Received line says so; after the handshake STARTTLS is no longer offered.
#[test]
fn starttls_with_python_smtplib() {
    let sb = sandbox();
    make_smtpcert(&sb);
    let (_server, port) = tcpserver(&sb, &[]);
    let script = r#"
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=30)
s.ehlo("py.example")
assert s.has_extn("starttls"), s.esmtp_features
code, _ = s.starttls(context=ctx)
assert code == 220, code
s.ehlo("py.example")
assert not s.has_extn("starttls"), s.esmtp_features
assert s.sock.version().startswith("TLSv1."), s.sock.version()
s.sendmail("tls@client.example.net", ["u@example.org"], b"Subject: tls\r\n\r\nsecret\r\n")
s.quit()
"#;
    assert_ok(&python_tls(script, port), "python3 smtplib starttls");
    let todo = sb.todo();
    assert_eq!(todo.len(), 1);
    let text = todo[0].text();
    assert!(text.contains(" (qmail-ldap-rs) with (TLSv1."), "{text}");
    assert!(text.contains(" cipher ") && text.contains(") encrypted SMTP\n"), "{text}");
    assert!(text.ends_with("Subject: tls\n\nsecret\n"), "{text}");
}

/// Commands pipelined behind STARTTLS (in the same packet, before the handshake) are thrown
/// away, never run inside the TLS session (the CVE-2011-0411 class); HELO state and the
/// envelope start afresh after the handshake.
#[test]
fn starttls_discards_what_was_pipelined_before_the_handshake() {
    let sb = sandbox();
    make_smtpcert(&sb);
    let (_server, port) = tcpserver(&sb, &[("RELAYCLIENT", "")]);
    let script = r#"
def session(behind):
    raw = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
    f = raw.makefile("rb")
    assert f.readline().startswith(b"220 ")
    raw.sendall(b"EHLO py.example\r\n")
    while True:
        line = f.readline()
        if line.startswith(b"250 "):
            break
    # STARTTLS and more in one write
    raw.sendall(b"STARTTLS\r\n" + behind)
    assert f.readline().startswith(b"220 "), "no 220"
    tls = ctx.wrap_socket(raw, server_hostname="mx.example.org")
    t = tls.makefile("rb")
    tls.sendall(b"NOOP\r\n")
    first = t.readline()
    assert first.startswith(b"250 ") and b"ok" in first and b"flushed" not in first, first
    # the envelope was reset: RCPT without MAIL is a bad sequence
    tls.sendall(b"RCPT TO:<u@example.org>\r\n")
    rcpt = t.readline()
    assert rcpt.startswith(b"503 "), rcpt
    tls.sendall(b"QUIT\r\n")
    t.readline()
    tls.close()
session(b"RSET\r\n")
session(b"MAIL FROM:<evil@client.example.net>\r\n")
"#;
    assert_ok(&python_tls(script, port), "python3 starttls pipelining");
    assert!(sb.todo().is_empty());
}

/// STARTTLS with an argument is 501; without a certificate it is not offered and is 502; a
/// broken certificate is 454 with a log line naming the file, and the session goes on in
/// plaintext only if the client wants it.
#[test]
fn starttls_refusals() {
    let sb = sandbox();
    let input = "EHLO c\r\nSTARTTLS\r\nQUIT\r\n";
    let out = run_with(&mut smtpd(&sb), input.as_bytes());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("250-STARTTLS"), "not offered without a certificate: {text}");
    assert!(text.contains("\r\n502 5.5.1 STARTTLS not available"), "{text}");
    sb.control("smtpcert", "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n");
    let input = "EHLO c\r\nSTARTTLS now\r\nSTARTTLS\r\nQUIT\r\n";
    let mut cmd = smtpd(&sb);
    cmd.env("LOGLEVEL", "1");
    let out = run_with(&mut cmd, input.as_bytes());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("250-STARTTLS\r\n"), "{text}");
    assert!(text.contains("\r\n501 5.5.4 STARTTLS takes no argument"), "{text}");
    assert!(text.contains("\r\n454 4.3.0 TLS not available"), "{text}");
    assert!(text.contains("\r\n221 "), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("control/smtpcert"), "{err}");
}

/// Real TLS clients: swaks with STARTTLS (`--tls`) and on connect (`--tlsc`, qmail-smtpd
/// with SMTPS), and openssl s_client's STARTTLS.
#[test]
fn starttls_and_smtps_with_swaks_and_openssl() {
    let sb = sandbox();
    make_smtpcert(&sb);
    let (_plain, port) = tcpserver(&sb, &[]);
    let (_smtps, sport) = tcpserver(&sb, &[("SMTPS", "")]);
    for (p, mode) in [(port, "--tls"), (sport, "--tlsc")] {
        let out = Command::new("swaks")
            .args(["--server", &format!("127.0.0.1:{p}"), mode])
            .args(["--from", "s@client.example.net", "--to", "u@example.org"])
            .args(["--header", &format!("Subject: swaks {mode}")])
            .output()
            .expect("swaks must be installed");
        assert_ok(&out, &format!("swaks {mode}"));
    }
    let todo = sb.todo();
    assert_eq!(todo.len(), 2);
    for m in &todo {
        assert!(m.text().contains(") encrypted SMTP\n"), "{}", m.text());
    }
    // openssl's own STARTTLS client, then a command inside the session
    let out = run_with(
        Command::new("openssl")
            .args(["s_client", "-quiet", "-starttls", "smtp", "-connect"])
            .arg(format!("127.0.0.1:{port}")),
        b"NOOP\r\nQUIT\r\n",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("250 2.0.0 ok") && text.contains("221 "), "{text}");
}

/// `control/tlsciphers` limits the cipher suites, and the protocol versions follow: with one
/// TLS 1.2 suite openssl s_client and Python's ssl both get exactly it, and the Received line
/// names it; the file is read at each STARTTLS, so one TLS 1.3 suite next gives TLS 1.3.
#[test]
fn tlsciphers_limits_the_suites() {
    let sb = sandbox();
    make_smtpcert(&sb);
    sb.control("tlsciphers", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n");
    let (_server, port) = tcpserver(&sb, &[]);
    let out = run_with(
        Command::new("openssl")
            .args(["s_client", "-brief", "-starttls", "smtp", "-connect"])
            .arg(format!("127.0.0.1:{port}")),
        b"NOOP\r\n",
    );
    let said =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("Protocol version: TLSv1.2"), "{said}");
    assert!(said.contains("Ciphersuite: ECDHE-RSA-AES128-GCM-SHA256"), "{said}");
    let script = r#"
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=30)
s.starttls(context=ctx)
print(s.sock.version(), s.sock.cipher()[0])
s.sendmail("c@client.example.net", ["u@example.org"], b"Subject: cipher\r\n\r\nx\r\n")
s.quit()
"#;
    let out = python_tls(script, port);
    assert_ok(&out, "python3 starttls with one TLS 1.2 suite");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256\n");
    let todo = sb.todo();
    assert_eq!(todo.len(), 1);
    let text = todo[0].text();
    assert!(
        text.contains(
            " with (TLSv1.2 cipher TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) encrypted SMTP\n"
        ),
        "{text}"
    );
    sb.control("tlsciphers", "TLS13_CHACHA20_POLY1305_SHA256\n");
    let out = python_tls(script, port);
    assert_ok(&out, "python3 starttls with one TLS 1.3 suite");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "TLSv1.3 TLS_CHACHA20_POLY1305_SHA256\n");
}

/// An unknown name in `control/tlsciphers` is a configuration error: STARTTLS answers 454 and
/// the log names the file and the word; an SMTPS session is closed without a byte.
#[test]
fn tlsciphers_with_an_unknown_name() {
    let sb = sandbox();
    make_smtpcert(&sb);
    sb.control("tlsciphers", "HIGH:!aNULL\n");
    let mut cmd = smtpd(&sb);
    cmd.env("LOGLEVEL", "1");
    let out = run_with(&mut cmd, b"EHLO c\r\nSTARTTLS\r\nQUIT\r\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\r\n454 4.3.0 TLS not available"), "{text}");
    assert!(text.contains("\r\n221 "), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: STARTTLS: control/tlsciphers: unknown cipher suite HIGH "),
        "{err}"
    );
    let mut cmd = smtpd(&sb);
    cmd.env("LOGLEVEL", "1").env("SMTPS", "1");
    let out = run_with(&mut cmd, b"");
    assert!(out.stdout.is_empty(), "{:?}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fatal: SMTPS: control/tlsciphers: unknown cipher suite HIGH "), "{err}");
}

/// Broken clients end the session, promptly and without a crash: one that closes
/// mid-handshake, one that stalls in it (timeoutsmtpd 1), and 10 MB of garbage instead of a
/// TLS record.
#[test]
fn starttls_with_broken_clients() {
    use std::io::{Read, Write};
    let sb = sandbox();
    make_smtpcert(&sb);
    sb.control("timeoutsmtpd", "1\n");
    let (_server, port) = tcpserver(&sb, &[("SMTPS", "")]);
    let started = std::time::Instant::now();
    // stalls: connects, sends nothing; the server gives up after its timeout
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    assert!(back.len() < 64, "closed after the timeout, at most an alert: {back:?}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    // closes mid-handshake: half a ClientHello
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
    drop(s);
    // garbage: a record header announcing too much, then 10 MB
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let garbage = vec![0x17u8; 10 * 1024 * 1024];
    let _ = s.write_all(&garbage);
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.len() < 64, "at most an alert back: {} bytes", rest.len());
    // and the server still serves
    let out = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{port}"), "--tlsc"])
        .args(["--from", "s@client.example.net", "--to", "u@example.org"])
        .output()
        .unwrap();
    assert_ok(&out, "swaks --tlsc after the broken clients");
}

/// `qmailctl tls-selfsigned` makes control/smtpcert (0640, the owner of control/) that
/// qmail-smtpd takes for STARTTLS and openssl reads, for `me` and the local domains; it keeps
/// an existing file unless --force.
#[test]
fn qmailctl_tls_selfsigned_makes_a_usable_certificate() {
    use std::os::unix::fs::MetadataExt;
    let sb = sandbox();
    let home = sb.home.to_str().unwrap().to_string();
    let out = sb.run("qmailctl", &["tls-selfsigned", "--home", &home, "--days", "3"], b"");
    assert_ok(&out, "qmailctl tls-selfsigned");
    let cert = sb.home.join("control/smtpcert");
    let meta = std::fs::metadata(&cert).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o640);
    assert_eq!(meta.uid(), std::fs::metadata(sb.home.join("control")).unwrap().uid());
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-ext", "subjectAltName", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    assert_ok(&out, "openssl x509");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("CN=mx.example.org") || text.contains("CN = mx.example.org"), "{text}");
    assert!(text.contains("DNS:example.org") && text.contains("DNS:localhost"), "{text}");
    let again = sb.run("qmailctl", &["tls-selfsigned", "--home", &home], b"");
    assert_ne!(code(&again), 0, "an existing certificate is kept");
    let forced = sb.run("qmailctl", &["tls-selfsigned", "--home", &home, "--force"], b"");
    assert_ok(&forced, "qmailctl tls-selfsigned --force");
    // qmail-smtpd uses it
    let (_server, port) = tcpserver(&sb, &[]);
    let script = r#"
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=30)
s.starttls(context=ctx)
s.sendmail("t@client.example.net", ["u@example.org"], b"Subject: selfsigned\r\n\r\nx\r\n")
s.quit()
"#;
    assert_ok(&python_tls(script, port), "python3 starttls with the self-signed certificate");
    assert_eq!(sb.todo().len(), 1);
}
