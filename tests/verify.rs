//! qmail-verify and qmail-smtpd's RCPTCHECK: the protocol spoken directly (`K`, `D`, `Z`, an
//! over-long request, end of input, root and broken controls refused), the `--listen` service,
//! and golden SMTP transcripts (`tests/fixtures/verify-*.smtp`) with a real slapd: directory
//! users and their alternate addresses, a catch-all domain, unknown, disabled and full
//! mailboxes, users/cdb and the alias user, the directory down, a verifier that never
//! answers, RELAYCLIENT. One live session sees slapd stop and start again and goes on.
//!
//! Running as root (as CI does), qmail-smtpd and qmail-verify run as nobody, as qmaild would.
//!
//! # Transcript directives
//!
//! The transcripts use tests/smtpd.rs's format, run on a sandbox with the directory entries of
//! [`populate`] and `RCPTCHECK` unset (each file sets what it tests), plus:
//!
//! ```text
//! # ldap down            control/ldapserver names a port nobody listens on
//! # verifier broken      bin/qmail-verify is a program that exits at once
//! # verifier garbage     bin/qmail-verify is a program that answers `X`
//! ```

use crate::harness::slapd::{self, Slapd};
use crate::harness::*;
use crate::ldap_deliver::Dir;
use crate::smtpd::{fixtures, run_all, run_transcript_on, smtpd};
use qmail::verify::{DISABLED, NO_HOST, NO_MAILBOX, OVER_QUOTA, TEMPORARY};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Run `cmd` as nobody when running as root.
fn unprivileged(cmd: &mut Command) -> &mut Command {
    if is_root() {
        cmd.uid(65534).gid(65534);
    }
    cmd
}

/// Write `text` to `path`, owned by `uid`, mode 0644.
fn owned_file(path: &Path, text: &str, uid: u32) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
}

/// The accounts every test here knows: in the directory `ann` (alternate address
/// `ann.alias@example.org`), `off` (disabled), `full` (over its quota) and the catch-all of
/// `catch.example.org`; in users/cdb `joe`; the alias user's `.qmail-info`.
fn populate(s: &Slapd, d: &Dir) {
    let sb = &d.sb;
    sb.control("locals", "mx.example.org\nexample.org\ncatch.example.org\n");
    sb.control(
        "rcpthosts",
        "example.org\n.sub.example.org\nrelay.example.net\ncatch.example.org\n",
    );
    d.user(s, "ann", "mailAlternateAddress: ann.alias@example.org");
    d.user(s, "off", "accountStatus: disabled");
    let full = d.user(s, "full", "mailQuotaSize: 100");
    let (uid, gid, joe) = sb.user_home("joe");
    owned_file(&full.join("Maildir/cur/1.2.host,S=5000:2,S"), &"x".repeat(5000), uid);
    d.user(s, "catcher", "mail: catchall@catch.example.org");
    sb.assign(&[("joe", uid, gid, &joe)]);
    let alias = sb.home.join("alias");
    let auid = std::os::unix::fs::MetadataExt::uid(&fs::metadata(&alias).unwrap());
    owned_file(&alias.join(".qmail-info"), "&ann@example.org\n", auid);
}

/// A sandbox with [`populate`]'s accounts in its own `ou` of `s`.
fn populated(s: &Slapd, name: &str) -> Dir {
    let d = Dir::on(s, name);
    populate(s, &d);
    d
}

/// control/ldapserver names a loopback port nobody listens on.
fn ldap_down(sb: &Sandbox) {
    sb.control("ldapserver", &format!("127.0.0.1:{}\n", free_port()));
}

/// bin/qmail-verify is a program that exits at once, answering nothing.
fn break_verifier(sb: &Sandbox) {
    fake_verifier(sb, "exit 1");
}

/// bin/qmail-verify is the shell script `body`.
fn fake_verifier(sb: &Sandbox, body: &str) {
    let prog = sb.home.join("bin/qmail-verify");
    let _ = fs::remove_file(&prog);
    fs::write(&prog, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&prog, fs::Permissions::from_mode(0o755)).unwrap();
}

/// qmail-verify on `sb`, unprivileged, with `input` on stdin.
fn verify(sb: &Sandbox, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut cmd = sb.cmd("qmail-verify");
    cmd.args(args);
    run_with(unprivileged(&mut cmd), input)
}

/// The expected bytes of a `D` or `Z` answer.
fn answer(letter: u8, text: &str) -> Vec<u8> {
    let mut v = vec![letter];
    v.extend_from_slice(text.as_bytes());
    v.push(0);
    v
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\0', "\\0")
}

#[test]
fn protocol_without_a_directory() {
    let sb = Sandbox::for_delivery();
    let (uid, gid, joe) = sb.user_home("joe");
    sb.assign(&[("joe", uid, gid, &joe)]);
    let alias = sb.home.join("alias");
    let auid = std::os::unix::fs::MetadataExt::uid(&fs::metadata(&alias).unwrap());
    owned_file(&alias.join(".qmail-info"), "&joe@example.org\n", auid);
    let long = format!("{}@example.org", "a".repeat(2000));
    let mut input = Vec::new();
    for req in [
        "joe@example.org",
        "JOE@Example.ORG",
        "info@example.org",
        "info-x@example.org",
        "nosuch@example.org",
        "someone@elsewhere.net",
        "noat",
        &long,
        "joe@example.org",
    ] {
        input.extend_from_slice(req.as_bytes());
        input.push(0);
    }
    // a partial request at the end of input is no request
    input.extend_from_slice(b"joe@exa");
    let out = verify(&sb, &[], &input);
    let mut want = b"KKK".to_vec();
    want.extend(answer(b'D', NO_MAILBOX));
    want.extend(answer(b'D', NO_MAILBOX));
    want.push(b'K');
    want.extend(answer(b'D', NO_HOST));
    want.extend(answer(b'D', NO_MAILBOX));
    want.push(b'K');
    assert_eq!(show(&out.stdout), show(&want), "stderr:\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(code(&out), 0, "end of input is exit 0");
    // nothing at all: exit 0 at once
    let out = verify(&sb, &[], b"");
    assert_eq!((code(&out), out.stdout.len()), (0, 0));
}

#[test]
fn temporary_failures_are_answered_with_a_fixed_text() {
    let sb = Sandbox::for_delivery();
    sb.control("ldapbasedn", "ou=nowhere,dc=example,dc=org\n");
    ldap_down(&sb);
    let out = verify(&sb, &[], b"joe@example.org\0x@elsewhere.net\0");
    let mut want = answer(b'Z', TEMPORARY);
    want.push(b'K');
    assert_eq!(show(&out.stdout), show(&want));
    assert_eq!(code(&out), 0);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("qmail-verify: joe@example.org: "), "the reason is logged: {log}");
    assert!(!show(&out.stdout).contains("127.0.0.1"), "the reason reaches the client");
}

#[test]
fn refuses_root_usage_errors_and_broken_controls() {
    let sb = Sandbox::for_delivery();
    if is_root() {
        let out = run_with(&mut sb.cmd("qmail-verify"), b"joe@example.org\0");
        assert_eq!((code(&out), out.stdout.len()), (100, 0), "root: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("root"));
    }
    let out = verify(&sb, &["--frobnicate"], b"");
    assert_eq!(code(&out), 100, "usage");
    let out = verify(&sb, &["--listen", "nowhere"], b"");
    assert_eq!(code(&out), 100, "bad --listen");
    sb.control("rcptcheckquota", "sometimes\n");
    let out = verify(&sb, &[], b"joe@example.org\0");
    assert_eq!((code(&out), out.stdout.len()), (100, 0), "bad rcptcheckquota: {out:?}");
    sb.control("rcptcheckquota", "TEMP\n");
    let out = verify(&sb, &[], b"x@elsewhere.net\0");
    assert_eq!((code(&out), show(&out.stdout)), (0, "K".to_string()));
}

#[test]
fn exit_codes_of_broken_pipes_and_roots() {
    let sb = Sandbox::for_delivery();
    // 1: the answer cannot be written. /dev/full fails every write, whatever else runs: a
    // pipe whose read end we close is not enough, since a child forked meanwhile by another
    // test thread may still hold that end until it execs, and then the write succeeds
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let mut cmd = sb.cmd("qmail-verify");
    let mut child = unprivileged(&mut cmd)
        .stdin(Stdio::piped())
        .stdout(full)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(b"x@elsewhere.net\0").unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 1, "{}", String::from_utf8_lossy(&out.stderr));
    // 111: no installation root
    let mut cmd = sb.cmd("qmail-verify");
    cmd.env("QMAILHOME", sb.home.join("nonexistent"));
    let out = run_with(unprivileged(&mut cmd), b"x@elsewhere.net\0");
    assert_eq!((code(&out), out.stdout.len()), (111, 0));
}

#[test]
fn quota_answers_perm_or_temp() {
    let s = slapd::shared();
    let d = populated(s, "vquota");
    let out = verify(&d.sb, &[], b"full@example.org\0off@example.org\0ann.alias@example.org\0");
    let mut want = answer(b'D', OVER_QUOTA);
    want.extend(answer(b'D', DISABLED));
    want.push(b'K');
    assert_eq!(show(&out.stdout), show(&want), "{}", String::from_utf8_lossy(&out.stderr));
    d.sb.control("rcptcheckquota", "temp\n");
    let out = verify(&d.sb, &[], b"full@example.org\0");
    assert_eq!(
        show(&out.stdout),
        show(&answer(b'Z', "The users mailfolder is over the allowed quota (size). (#4.2.2)"))
    );
}

/// One transcript of tests/fixtures/verify-*.smtp on a fresh populated sandbox.
fn run_verify_transcript(path: &Path) -> Result<(), String> {
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    let d = populated(slapd::shared(), &name);
    let text = fs::read_to_string(path).unwrap();
    if text.lines().any(|l| l == "# ldap down") {
        ldap_down(&d.sb);
    }
    if text.lines().any(|l| l == "# verifier broken") {
        break_verifier(&d.sb);
    }
    if text.lines().any(|l| l == "# verifier garbage") {
        fake_verifier(&d.sb, "printf X\nexec cat >/dev/null");
    }
    let mut cmd = smtpd(&d.sb);
    unprivileged(&mut cmd);
    run_transcript_on(&d.sb, cmd, path)
}

#[test]
fn rcptcheck_transcripts() {
    let files = fixtures("verify-");
    assert!(files.len() >= 8, "the transcripts are missing: {files:?}");
    run_all(&files, run_verify_transcript);
}

/// A qmail-smtpd session driven one command at a time.
struct Live {
    child: Guard,
    input: std::process::ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Live {
    fn start(cmd: &mut Command) -> Live {
        let (child, input, out) = spawn_piped(cmd);
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line).trim_end_matches('\r').to_string();
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut live = Live { child, input, lines };
        live.reply();
        live
    }

    /// The next complete reply (its last line).
    fn reply(&mut self) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .expect("qmail-smtpd answers within 60 s");
            if line.as_bytes().get(3) != Some(&b'-') {
                return line;
            }
        }
    }

    fn say(&mut self, command: &str) -> String {
        self.input.write_all(format!("{command}\r\n").as_bytes()).unwrap();
        self.input.flush().unwrap();
        self.reply()
    }
}

#[test]
fn slapd_down_then_back_in_one_session() {
    let s = Slapd::new();
    let d = populated(&s, "vdown");
    let mut cmd = smtpd(&d.sb);
    cmd.env("RCPTCHECK", "1").env("RELAYCLIENT", "");
    let mut live = Live::start(unprivileged(&mut cmd));
    assert_eq!(live.say("MAIL FROM:<a@client.example.net>"), "250 2.1.0 ok");
    assert_eq!(live.say("RCPT TO:<ann@example.org>"), "250 2.1.5 ok");
    s.stop();
    let deferred = format!("451 4.3.0 {TEMPORARY}");
    assert_eq!(live.say("RCPT TO:<ann.alias@example.org>"), deferred);
    assert_eq!(live.say("RCPT TO:<joe@example.org>"), deferred, "users/cdb waits too");
    assert_eq!(live.say("RCPT TO:<x@elsewhere.net>"), "250 2.1.5 ok", "relayed: not checked");
    s.start();
    assert_eq!(live.say("RCPT TO:<ann.alias@example.org>"), "250 2.1.5 ok");
    assert_eq!(live.say("RCPT TO:<nosuch@example.org>"), format!("550 5.1.1 {NO_MAILBOX}"));
    assert_eq!(live.say("DATA"), "354 go ahead");
    assert!(live.say("Subject: t\r\n\r\nhello\r\n.").starts_with("250 2.0.0 ok "));
    assert_eq!(live.say("QUIT"), "221 2.0.0 mx.example.org Goodbye.");
    let status = live.child.0.wait().unwrap();
    assert!(status.success(), "{status}");
    let todo = d.sb.todo();
    assert_eq!(todo.len(), 1);
    assert_eq!(
        todo[0].recipients(),
        ["ann@example.org", "x@elsewhere.net", "ann.alias@example.org"]
    );
}

/// `qmail-verify --listen unix:PATH` on `sb`, unprivileged, up once the socket answers.
fn service(sb: &Sandbox, socket: &Path) -> Guard {
    let mut cmd = sb.cmd("qmail-verify");
    cmd.arg("--listen")
        .arg(format!("unix:{}", socket.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let child = unprivileged(&mut cmd).spawn().unwrap();
    let guard = Guard(child);
    assert!(
        wait_until(Duration::from_secs(30), || std::os::unix::net::UnixStream::connect(socket)
            .is_ok()),
        "the service did not come up"
    );
    guard
}

/// Stop a service with TERM; its master and workers end.
fn stop(mut guard: Guard) {
    let pid = nix::unistd::Pid::from_raw(guard.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = guard.0.wait().unwrap();
    assert!(status.success(), "the service ended with {status}");
}

#[test]
fn service_answers_on_a_socket_and_serves_qmail_smtpd() {
    let s = slapd::shared();
    let d = populated(s, "vservice");
    let run = d.sb.home.join("run");
    fs::create_dir_all(&run).unwrap();
    if is_root() {
        std::os::unix::fs::chown(&run, Some(65534), Some(65534)).unwrap();
    }
    let socket = run.join("verify.sock");
    let svc = service(&d.sb, &socket);
    // two clients at once, each with several requests
    let mut a = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    let mut b = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    for stream in [&mut a, &mut b] {
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    }
    let ask = |stream: &mut std::os::unix::net::UnixStream, req: &str, want: &[u8]| {
        stream.write_all(format!("{req}\0").as_bytes()).unwrap();
        let mut got = vec![0u8; want.len()];
        stream.read_exact(&mut got).unwrap();
        assert_eq!(show(&got), show(want), "{req}");
    };
    ask(&mut a, "ann@example.org", b"K");
    ask(&mut b, "nosuch@example.org", &answer(b'D', NO_MAILBOX));
    ask(&mut a, "off@example.org", &answer(b'D', DISABLED));
    ask(&mut b, "whoever@catch.example.org", b"K");
    drop(a);
    drop(b);
    // qmail-smtpd through control/verifysocket (relative to the root); the co-process would
    // fail, so the answers come from the service
    d.sb.control("verifysocket", "run/verify.sock\n");
    break_verifier(&d.sb);
    let mut cmd = smtpd(&d.sb);
    cmd.env("RCPTCHECK", "1");
    let input = "MAIL FROM:<a@client.example.net>\r\nRCPT TO:<ann.alias@example.org>\r\n\
                 RCPT TO:<nosuch@example.org>\r\nDATA\r\nSubject: x\r\n\r\ny\r\n.\r\n\
                 MAIL FROM:<a@client.example.net>\r\nRCPT TO:<joe@example.org>\r\nQUIT\r\n";
    let out = run_with(unprivileged(&mut cmd), input.as_bytes());
    let replies: Vec<String> =
        String::from_utf8_lossy(&out.stdout).split_terminator("\r\n").map(String::from).collect();
    let want = [
        "250 2.1.0 ok".to_string(),
        "250 2.1.5 ok".to_string(),
        format!("550 5.1.1 {NO_MAILBOX}"),
        "354 go ahead".to_string(),
    ];
    assert_eq!(replies[1..5], want, "{replies:#?}");
    assert!(replies[5].starts_with("250 2.0.0 ok "), "{replies:#?}");
    assert_eq!(replies[6..8], ["250 2.1.0 ok", "250 2.1.5 ok"], "the service stays after DATA");
    stop(svc);
}
