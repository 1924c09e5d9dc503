//! SMTP AUTH in qmail-smtpd with the real bin/auth_smtp and a real slapd: swaks with PLAIN and
//! LOGIN for a directory user, wrong, empty and disabled credentials, relaying only after
//! AUTH, the Received line and SMTPAUTHUSER, the directory stopped and frozen, and hostile
//! exchanges (an endless base64 line, bad base64, NUL, `*` and `)(` in names, thousands of
//! failures in a row).
//!
//! Running as root (as CI does), qmail-smtpd and auth_smtp run as nobody under tcpserver, as
//! they would as qmaild. The failure delays (1 s + 4 s) are shortened with the test build's
//! `QMAILSMTPD_TEST_AUTHDELAY` except in the test that measures them.

use crate::harness::slapd::{self, Slapd};
use crate::harness::*;
use crate::ldap_deliver::Dir;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const PASSWORD: &str = "s3cret pass";

/// A directory sandbox with `joe` (PASSWORD), `dis` (disabled), `nop` (noaccess) and `star`
/// (whose uid is `*`): relaying only for authenticated clients.
fn directory(server: &Slapd, name: &str) -> Dir {
    let d = Dir::on(server, name);
    let pw = qmail::passwd::ssha(PASSWORD.as_bytes(), b"saltsalt");
    d.user(server, "joe", &format!("userPassword: {pw}"));
    d.user(server, "dis", &format!("userPassword: {pw}\naccountStatus: disabled"));
    d.user(server, "nop", &format!("userPassword: {pw}\naccountStatus: noaccess"));
    d.sb.control("rcpthosts", "example.org\n");
    d
}

/// qmail-smtpd of `sb` under tcpserver on 127.0.0.1 (as nobody when root) with `env`.
fn smtpd_server(sb: &Sandbox, env: &[(&str, &str)]) -> (Guard, u16) {
    let port = free_port();
    let mut cmd = Command::new("tcpserver");
    for k in ["RELAYCLIENT", "SMTPAUTH", "AUTHREQUIRED", "AUTHPREPEND", "QMAILQUEUE", "NOPBS"] {
        cmd.env_remove(k);
    }
    cmd.env("QMAILHOME", &sb.home).env("NOPBS", "");
    for (k, v) in env {
        cmd.env(k, v);
    }
    if is_root() {
        cmd.args(["-u", "65534", "-g", "65534"]);
    }
    cmd.args(["-HRl0", "127.0.0.1", &port.to_string()]).arg(bin("qmail-smtpd"));
    (tcpserver_ready(&mut cmd, port), port)
}

/// swaks to `port` sending to `to`, with `--auth TYPE` and the credentials when given.
fn swaks(port: u16, to: &str, auth: Option<(&str, &str, &str)>) -> Output {
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", &format!("127.0.0.1:{port}")])
        .args(["--from", "joe@example.org", "--to", to])
        .args(["--header", "Subject: auth test"]);
    if let Some((kind, user, pw)) = auth {
        cmd.args(["--auth", kind, "--auth-user", user, "--auth-password", pw]);
    }
    cmd.output().expect("swaks must be installed")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A raw client: reads the greeting on connect.
struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut c = Client { r: BufReader::new(s.try_clone().unwrap()), w: s };
        assert!(c.reply().starts_with("220 "));
        c
    }

    /// The next whole reply, its lines joined by `\n`.
    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            assert!(self.r.read_line(&mut line).unwrap() > 0, "connection closed after {all:?}");
            all.push_str(line.trim_end());
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
            all.push('\n');
        }
    }

    fn say(&mut self, line: &str) -> String {
        self.w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        self.reply()
    }
}

fn b64(s: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn plain(user: &str, pw: &str) -> String {
    b64(format!("\0{user}\0{pw}").as_bytes())
}

/// PLAIN and LOGIN with swaks for a directory user: relaying is refused before AUTH and
/// allowed after it; the message's Received line names the login (AUTHPREPEND) and the
/// queue program sees SMTPAUTHUSER; wrong, empty and disabled credentials get 535.
#[test]
fn swaks_plain_and_login_then_relaying() {
    let server = slapd::shared();
    let d = directory(server, "smtpauth-swaks");
    let sb = &d.sb;
    // a queue filter that records SMTPAUTHUSER, then hands on to qmail-queue
    let filter = sb.home.join("bin/qq-filter");
    std::fs::write(
        &filter,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"${{SMTPAUTHUSER-unset}}\" >> {}/authusers\nexec {}/bin/qmail-queue\n",
            sb.home.display(),
            sb.home.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&filter, std::fs::Permissions::from_mode(0o755)).unwrap();
    let authusers = sb.home.join("authusers");
    std::fs::write(&authusers, "").unwrap();
    std::fs::set_permissions(&authusers, std::fs::Permissions::from_mode(0o666)).unwrap();
    let qq = filter.display().to_string();
    let env = [
        ("SMTPAUTH", "PLAINTEXT"),
        ("AUTHPREPEND", "auth-"),
        ("QMAILQUEUE", qq.as_str()),
        ("QMAILSMTPD_TEST_AUTHDELAY", "0"),
    ];
    let (_server, port) = smtpd_server(sb, &env);
    let out = swaks(port, "someone@elsewhere.example", None);
    assert_ne!(code(&out), 0);
    assert!(text(&out).contains("553 "), "relaying refused before AUTH: {}", text(&out));
    for kind in ["PLAIN", "LOGIN"] {
        let out = swaks(port, "someone@elsewhere.example", Some((kind, "joe", PASSWORD)));
        assert_ok(&out, &format!("swaks --auth {kind}"));
        assert!(text(&out).contains("235 2.0.0 nice to meet you"), "{}", text(&out));
    }
    // a users/cdb user with a users/passwd password
    let (uid, gid, kim) = sb.user_home("kim");
    sb.assign(&[("kim", uid, gid, &kim)]);
    let home = sb.home.to_str().unwrap().to_string();
    let set =
        sb.run("qmailctl", &["passwd", "--home", &home, "kim", "--password-stdin"], b"kim pw\n");
    assert_ok(&set, "qmailctl passwd");
    let out = swaks(port, "someone@elsewhere.example", Some(("LOGIN", "kim", "kim pw")));
    assert_ok(&out, "swaks --auth LOGIN for a users/passwd user");
    let queued = sb.todo();
    assert_eq!(queued.len(), 3);
    for q in &queued {
        let m = String::from_utf8_lossy(&q.mess);
        assert!(
            m.contains("(auth-joe@[127.0.0.1])") || m.contains("(auth-kim@[127.0.0.1])"),
            "{m}"
        );
    }
    assert_eq!(std::fs::read_to_string(&authusers).unwrap(), "joe\njoe\nkim\n");
    for (user, pw, want) in [
        ("joe", "wrong", "535 5.7.8 authentication failure"),
        ("nobody-here", PASSWORD, "535 5.7.8 authentication failure"),
        ("dis", PASSWORD, "535 5.7.8 authentication failure: account disabled"),
        ("nop", PASSWORD, "535 5.7.8 authentication failure: account disabled"),
    ] {
        let out = swaks(port, "someone@elsewhere.example", Some(("PLAIN", user, pw)));
        assert_ne!(code(&out), 0, "{user}");
        assert!(text(&out).contains(want), "{user}/{pw}: {}", text(&out));
    }
    // an empty password, and PLAIN with an initial response of `=`
    let mut c = Client::connect(port);
    assert!(c.say("EHLO client").contains("250-AUTH LOGIN PLAIN"));
    assert!(c.say(&format!("AUTH PLAIN {}", plain("joe", ""))).starts_with("535 "));
    assert!(c.say("AUTH PLAIN =").starts_with("501 "));
    assert!(c.say("AUTH LOGIN").starts_with("334 VXNlcm5hbWU6"));
    assert!(c.say(&b64(b"joe")).starts_with("334 UGFzc3dvcmQ6"));
    assert!(c.say("").starts_with("535 "), "empty LOGIN password");
    assert_eq!(sb.todo().len(), 3);
}

/// After AUTH the client may relay for the rest of the session: RSET and a new EHLO keep it;
/// a second AUTH is 503; AUTH inside a transaction is 503.
#[test]
fn relaying_lasts_the_session() {
    let server = slapd::shared();
    let d = directory(server, "smtpauth-session");
    let (_server, port) =
        smtpd_server(&d.sb, &[("SMTPAUTH", "PLAINTEXT"), ("QMAILSMTPD_TEST_AUTHDELAY", "0")]);
    let mut c = Client::connect(port);
    c.say("EHLO client");
    assert!(c.say("MAIL FROM:<joe@example.org>").starts_with("250 "));
    assert!(c.say(&format!("AUTH PLAIN {}", plain("joe", PASSWORD))).starts_with("503 "));
    assert!(c.say("RSET").starts_with("250 "));
    assert!(c.say(&format!("AUTH PLAIN {}", plain("joe", PASSWORD))).starts_with("235 "));
    assert!(c.say(&format!("AUTH PLAIN {}", plain("joe", PASSWORD))).starts_with("503 "));
    let ehlo = c.say("EHLO client");
    assert!(!ehlo.contains("AUTH"), "no AUTH offered after success: {ehlo}");
    assert!(c.say("RSET").starts_with("250 "));
    assert!(c.say("MAIL FROM:<joe@example.org>").starts_with("250 "));
    assert!(c.say("RCPT TO:<x@elsewhere.example>").starts_with("250 "));
    assert!(c.say("QUIT").starts_with("221 "));
}

/// The directory stopped: 454 (never 535); frozen past ldaptimeout: 454 and the session
/// goes on; back again: 235.
#[test]
fn directory_outages_are_temporary() {
    let server = Slapd::new();
    let d = directory(&server, "smtpauth-down");
    d.sb.control("ldaptimeout", "2\n");
    let (_server, port) =
        smtpd_server(&d.sb, &[("SMTPAUTH", "PLAINTEXT"), ("QMAILSMTPD_TEST_AUTHDELAY", "0")]);
    let mut c = Client::connect(port);
    c.say("EHLO client");
    server.pause();
    let started = Instant::now();
    let r = c.say(&format!("AUTH PLAIN {}", plain("joe", PASSWORD)));
    server.resume();
    assert!(r.starts_with("454 4.3.0 temporary authentication failure"), "{r}");
    assert!(started.elapsed() < Duration::from_secs(25), "answered within the ldaptimeout");
    assert!(c.say("NOOP").starts_with("250 "), "the session survives");
    server.stop();
    let r = c.say(&format!("AUTH PLAIN {}", plain("joe", PASSWORD)));
    assert!(r.starts_with("454 "), "{r}");
    server.start();
    let r = c.say(&format!("AUTH PLAIN {}", plain("joe", PASSWORD)));
    assert!(r.starts_with("235 "), "{r}");
}

/// Hostile exchanges: a 1 MB line, bad base64, NUL and filter characters in names; each
/// answered, the session going on, nothing matched by a wildcard.
#[test]
fn hostile_exchanges() {
    let server = slapd::shared();
    let d = directory(server, "smtpauth-hostile");
    let (_server, port) =
        smtpd_server(&d.sb, &[("SMTPAUTH", "PLAINTEXT"), ("QMAILSMTPD_TEST_AUTHDELAY", "0")]);
    let mut c = Client::connect(port);
    c.say("EHLO client");
    let huge = "QUFB".repeat(256 * 1024);
    // a command line over 1024 bytes is refused as such
    let r = c.say(&format!("AUTH PLAIN {huge}"));
    assert!(r.starts_with("500 5.5.2 line too long"), "1 MB initial response: {r}");
    assert!(c.say("AUTH LOGIN").starts_with("334 "));
    assert!(c.say(&huge).starts_with("501 "), "1 MB exchange line");
    assert!(c.say("AUTH PLAIN !!!not base64!!!").starts_with("501 "));
    for user in ["*", "j*", "joe)(uid=*", "*)(|(uid=*", "joe\0x", "\0"] {
        let r = c.say(&format!("AUTH PLAIN {}", plain(user, PASSWORD)));
        assert!(r.starts_with("535 ") || r.starts_with("501 "), "{user:?}: {r}");
    }
    assert!(c.say("AUTH LOGIN").starts_with("334 "));
    assert!(c.say(&b64(b"jo\0e")).starts_with("334 "));
    let r = c.say(&b64(PASSWORD.as_bytes()));
    assert!(r.starts_with("535 ") || r.starts_with("501 "), "{r}");
    assert!(c.say("NOOP").starts_with("250 "));
    assert!(c.say(&format!("AUTH PLAIN {}", plain("joe", PASSWORD))).starts_with("235 "));
}

/// Thousands of failed logins in a row in one session: each answered, qmail-smtpd's memory
/// flat (its peak at the end within a little of its peak after the first hundred).
#[test]
fn thousands_of_failures_in_a_row() {
    let server = slapd::shared();
    let d = directory(server, "smtpauth-many");
    let (_server, port) =
        smtpd_server(&d.sb, &[("SMTPAUTH", "PLAINTEXT"), ("QMAILSMTPD_TEST_AUTHDELAY", "0")]);
    let mut c = Client::connect(port);
    c.say("EHLO client");
    let pid = smtpd_pid(port);
    let bad = format!("AUTH PLAIN {}", plain("joe", "wrong"));
    let mut early = 0;
    for i in 0..N_FAILURES {
        let r = c.say(&bad);
        assert!(r.starts_with("535 "), "failure {i}: {r}");
        if i == 100 {
            early = vm_hwm(pid);
        }
    }
    let late = vm_hwm(pid);
    assert!(late <= early + 512, "peak memory grew from {early} kB to {late} kB");
    assert!(c.say(&format!("AUTH PLAIN {}", plain("joe", PASSWORD))).starts_with("235 "));
}

/// How many failures [`thousands_of_failures_in_a_row`] makes.
const N_FAILURES: usize = 10_000;

/// The pid of the qmail-smtpd serving the one connection to `port`.
fn smtpd_pid(port: u16) -> i32 {
    let mut found = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            found = pids_of(&["qmail-smtpd"]).into_iter().find(|pid| {
                // the whole variable (port 1234 is no match for 12345), and not a child
                // forked on the way to an exec (it has no session of its own)
                let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                let ours =
                    env.split(|&b| b == 0).any(|v| v == format!("TCPLOCALPORT={port}").as_bytes());
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let ppid = stat.rsplit(") ").next().and_then(|r| r.split(' ').nth(1)).unwrap_or("");
                // a parent we cannot read (gone, or a zombie: empty) tells nothing: not ours
                let parent = std::fs::read(format!("/proc/{ppid}/cmdline")).unwrap_or_default();
                let Some(argv0) = parent.split(|&b| b == 0).next().filter(|a| !a.is_empty()) else {
                    return false;
                };
                // and the program itself, not a process forked on the way to exec'ing it
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                ours && comm.trim() == "qmail-smtpd" && !argv0.ends_with(b"/qmail-smtpd")
            });
            found.is_some()
        }),
        "no qmail-smtpd for port {port}"
    );
    found.unwrap()
}

/// VmHWM of `pid`, kB.
fn vm_hwm(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Without the test override, a failure is answered after a second and the next reply
/// comes four seconds later.
#[test]
fn failures_are_delayed() {
    let server = slapd::shared();
    let d = directory(server, "smtpauth-delay");
    let (_server, port) = smtpd_server(&d.sb, &[("SMTPAUTH", "PLAINTEXT")]);
    let mut c = Client::connect(port);
    c.say("EHLO client");
    let t0 = Instant::now();
    c.w.write_all(format!("AUTH PLAIN {}\r\nNOOP\r\n", plain("joe", "wrong")).as_bytes()).unwrap();
    assert!(c.reply().starts_with("535 "));
    let t1 = t0.elapsed();
    assert!(c.reply().starts_with("250 "));
    let t2 = t0.elapsed();
    assert!(t1 >= Duration::from_secs(1), "535 after {t1:?}");
    assert!(t2 >= Duration::from_secs(5), "the next reply after {t2:?}");
}
