//! imapd under ucspi-tcp's tcpserver: Python's imaplib over every command, the login rules
//! (LOGINDISABLED, STARTTLS, `-s`, AUTHENTICATE PLAIN), two sessions and deliveries seeing
//! each other, hostile input, `msg/motd`, `msg/shutdown`, `log/USER`, SIGTERM, and large
//! mailboxes and messages in flat memory.

use crate::harness::assert_ok;
use crate::harness::imap::{Client, Imapd, PASS, USER};
use std::fs;
use std::path::Path;
use std::time::Instant;

fn fixture(name: &str) -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name))
        .unwrap()
}

/// Every P0/P1 command through imaplib, with the exact responses of the rules clients trip
/// over (tests/fixtures/imap_session.py).
#[test]
fn imaplib_session_over_every_command() {
    let imapd = Imapd::new(&["-p", "2"]);
    assert_eq!(imapd.python(&fixture("imap_session.py")).trim(), "done");
}

/// Deliver `text` to joe's Maildir with the real qmail-local (as joe's uid).
fn qmail_local(imapd: &Imapd, text: &str) {
    let home = imapd.home.to_str().unwrap();
    let mut cmd = imapd.as_user(&crate::harness::bin("qmail-local"));
    cmd.args(["--", USER, home, USER, "", "", "example.org", "sender@example.org", "./Maildir/"]);
    // qmail-local wants a file it can seek on fd 0
    let msg = imapd.sb.tmp.path().join("message");
    fs::write(&msg, text).unwrap();
    cmd.stdin(fs::File::open(&msg).unwrap());
    let out = cmd.output().unwrap();
    assert_ok(&out, "qmail-local");
}

/// Two sessions on one INBOX and deliveries by qmail-local: each change is seen by the other
/// session at its next NOOP (or in IDLE) with the right numbers; no EXPUNGE is sent during a
/// FETCH, STORE or SEARCH, but at the next NOOP.
#[test]
fn two_sessions_and_deliveries_see_each_other() {
    let imapd = Imapd::new(&["-p", "2"]);
    let mut a = imapd.login();
    let mut b = imapd.login();
    let u = a.ok("a1", "SELECT INBOX");
    assert!(u.contains(&"* 0 EXISTS".to_string()), "{u:?}");
    b.ok("b1", "SELECT INBOX");
    qmail_local(&imapd, "Subject: one\n\nfirst\n");
    let u = a.ok("a2", "NOOP");
    assert_eq!(u, ["* 1 EXISTS", "* 1 RECENT"], "the delivery at A's NOOP");
    let u = b.ok("b2", "NOOP");
    assert_eq!(u, ["* 1 EXISTS", "* 0 RECENT"], "\\Recent went to A, who took it first");
    qmail_local(&imapd, "Subject: two\n\nsecond\n");
    qmail_local(&imapd, "Subject: three\n\nthird\n");
    let u = b.ok("b3", "NOOP");
    assert_eq!(u, ["* 3 EXISTS", "* 2 RECENT"]);
    let u = a.ok("a3", "NOOP");
    assert_eq!(u, ["* 3 EXISTS", "* 1 RECENT"], "message 1 is still A's recent one");
    // flags from A at B's NOOP
    a.ok("a4", "STORE 2 +FLAGS.SILENT (\\Seen)");
    let u = b.ok("b4", "NOOP");
    assert_eq!(u, ["* 2 FETCH (UID 2 FLAGS (\\Seen \\Recent))"]);
    // A expunges 1 and 2: B gets no EXPUNGE during FETCH/STORE/SEARCH
    a.ok("a5", "STORE 1:2 +FLAGS.SILENT (\\Deleted)");
    let u = a.ok("a6", "EXPUNGE");
    assert_eq!(u, ["* 1 EXPUNGE", "* 1 EXPUNGE"]);
    let (u, t) = b.cmd("b5", "FETCH 1:* (UID)");
    assert!(u.iter().all(|l| !l.contains("EXPUNGE")), "{u:?}");
    assert!(t.starts_with("b5 NO [EXPUNGEISSUED]") || t.starts_with("b5 OK"), "{t}");
    assert!(u.contains(&"* 3 FETCH (UID 3)".to_string()), "{u:?}");
    let u = b.ok("b6", "SEARCH ALL");
    assert_eq!(u, ["* SEARCH 3"], "the vanished ones match nothing, numbers unchanged");
    let u = b.ok("b7", "NOOP");
    assert_eq!(u, ["* 1 EXPUNGE", "* 1 EXPUNGE"], "each number counts the ones before");
    let u = b.ok("b8", "FETCH 1 (UID FLAGS)");
    assert_eq!(u, ["* 1 FETCH (UID 3 FLAGS (\\Recent))"]);
    // IDLE: a delivery shows up without a command
    b.send(b"b9 IDLE\r\n");
    assert!(b.line().starts_with("+ "), "IDLE continuation");
    qmail_local(&imapd, "Subject: four\n\nfourth\n");
    assert_eq!(b.line(), "* 2 EXISTS");
    assert_eq!(b.line(), "* 2 RECENT");
    a.ok("a7", "STORE 1 +FLAGS.SILENT (\\Flagged)");
    assert_eq!(b.line(), "* 1 FETCH (UID 3 FLAGS (\\Flagged \\Recent))");
    b.send(b"DONE\r\n");
    assert_eq!(b.line(), "b9 OK IDLE terminated");
    a.ok("a8", "LOGOUT");
    b.ok("b10", "LOGOUT");
}

/// Hostile input: a 1 MB command line, a literal of 2^31 announced then silence, 10,000
/// nested parentheses, invalid modified UTF-7 and `..` in names; each answered and the
/// session goes on. A junk first line and ten syntax errors in a row end it with BYE.
#[test]
fn hostile_input_is_refused_and_the_session_goes_on() {
    let imapd = Imapd::new(&["-p", "2"]);
    let mut c = imapd.login();
    let mut long = b"h1 SELECT ".to_vec();
    long.extend(std::iter::repeat_n(b'x', 1 << 20));
    long.extend_from_slice(b"\r\n");
    c.send(&long);
    let l = c.line();
    assert!(l.starts_with("h1 BAD [TOOBIG]") || l.starts_with("* BAD [TOOBIG]"), "{l}");
    c.ok("h2", "NOOP");
    // a synchronizing literal too big is refused before any of it is sent
    c.send(b"h3 APPEND INBOX {2147483648}\r\n");
    let l = c.line();
    assert!(l.starts_with("h3 BAD [TOOBIG]"), "{l}");
    c.ok("h4", "NOOP");
    let deep = format!("h5 FETCH 1 {}FLAGS{}\r\n", "(".repeat(10_000), ")".repeat(10_000));
    c.send(deep.as_bytes());
    let l = c.line();
    assert!(l.starts_with("h5 BAD") || l.starts_with("* BAD"), "{l}");
    c.ok("h6", "NOOP");
    for (tag, name) in [
        ("h7", "INBOX.&Jjo"),
        ("h8", "INBOX.&AGE-"),
        ("h9", "\"INBOX.../etc\""),
        ("h10", "\"../../etc\""),
        ("h11", "INBOX..x"),
        ("h12", "\"INBOX.a/../../b\""),
        ("h13", "."),
    ] {
        let (_, t) = c.cmd(tag, &format!("CREATE {name}"));
        assert!(t.starts_with(&format!("{tag} NO")), "{name}: {t}");
        let (_, t) = c.cmd(tag, &format!("SELECT {name}"));
        assert!(t.starts_with(&format!("{tag} NO")), "{name}: {t}");
    }
    let names: Vec<_> = fs::read_dir(imapd.home.parent().unwrap()).unwrap().collect();
    assert_eq!(names.len(), 1, "nothing made beside the home");
    // ten syntax errors in a row: BYE
    for i in 0..9 {
        let (_, t) = c.cmd(&format!("e{i}"), "FROB");
        assert!(t.starts_with(&format!("e{i} BAD")), "{t}");
    }
    c.send(b"e9 FROB\r\n");
    assert!(c.line().starts_with("e9 BAD"));
    assert_eq!(c.line(), "* BYE Too many syntax errors");
    assert_eq!(c.line(), "", "closed");
    // junk as the first line: BYE at once
    let mut c = imapd.connect();
    c.line();
    c.send(b"GET / HTTP/1.1\r\n");
    assert_eq!(c.line(), "GET BAD Unknown command");
    assert_eq!(c.line(), "* BYE Not an IMAP client");
    // the literal of 2^31 announced non-synchronizing, then silence: refused and closed
    let mut c = imapd.login();
    c.send(b"h20 APPEND INBOX {2147483648+}\r\n");
    let l = c.line();
    assert!(l.starts_with("h20 BAD [TOOBIG]"), "{l}");
}

/// `msg/motd` after the greeting; `msg/shutdown` refuses at the greeting and ends a session
/// before its next command; `log/USER` records the session after login, never the password.
#[test]
fn motd_shutdown_and_telemetry() {
    let imapd = Imapd::new(&["-p", "2"]);
    let conf = imapd.sb.home.join("imapd");
    fs::create_dir_all(conf.join("msg")).unwrap();
    fs::create_dir_all(conf.join("log").join(USER)).unwrap();
    std::os::unix::fs::chown(conf.join("log").join(USER), Some(imapd.uid), Some(imapd.gid))
        .unwrap();
    fs::write(conf.join("msg/motd"), "[[Maintenance tonight\nsecond line\n").unwrap();
    let mut c = imapd.connect();
    assert!(c.line().starts_with("* OK [CAPABILITY "));
    assert_eq!(c.line(), "* OK [ALERT] Maintenance tonight");
    c.ok("t1", &format!("LOGIN {USER} \"{PASS}\""));
    c.ok("t2", "SELECT INBOX");
    fs::write(conf.join("msg/shutdown"), "Moving to new hardware\n").unwrap();
    c.send(b"t3 NOOP\r\n");
    assert_eq!(c.line(), "* BYE [ALERT] Moving to new hardware");
    assert_eq!(c.line(), "");
    let mut c = imapd.connect();
    assert_eq!(c.line(), "* BYE [ALERT] Moving to new hardware");
    // the per-service file wins
    fs::write(conf.join("msg/shutdown.imap"), "IMAP only\n").unwrap();
    let mut c = imapd.connect();
    assert_eq!(c.line(), "* BYE [ALERT] IMAP only");
    let logs: Vec<_> =
        fs::read_dir(conf.join("log").join(USER)).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let name = logs[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("imap-"), "{name}");
    let text = fs::read_to_string(&logs[0]).unwrap();
    assert!(text.starts_with(&format!("---------- {USER} ")), "{text}");
    assert!(text.contains("SELECT INBOX") && text.contains(">") && text.contains("<"), "{text}");
    assert!(!text.contains(PASS), "no password in {text}");
}

/// SIGTERM ends a session with `* BYE` (doc/imapd.8).
#[test]
fn sigterm_says_bye() {
    let imapd = Imapd::new(&["-p", "2"]);
    let mut c = imapd.login();
    c.ok("s1", "SELECT INBOX");
    let pid = imapd.pid();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    assert_eq!(c.line(), "* BYE Server shutting down");
    assert_eq!(c.line(), "");
}

/// `qmailctl tls-selfsigned` for the sandbox: control/smtpcert.
fn certificate(imapd: &Imapd) {
    let home = imapd.sb.home.to_str().unwrap().to_string();
    let out = imapd.sb.run("qmailctl", &["tls-selfsigned", "--home", &home, "--days", "30"], b"");
    assert_ok(&out, "qmailctl tls-selfsigned");
}

/// Without TLS and without `-p 2`, LOGIN is disabled (LOGINDISABLED, NO [PRIVACYREQUIRED]);
/// after STARTTLS it works, and so does `-s` (implicit TLS); AUTHENTICATE PLAIN with and
/// without an initial response; a wrong password is NO [AUTHENTICATIONFAILED].
#[test]
fn logins_tls_and_authenticate() {
    let mut imapd = Imapd::new(&[]);
    certificate(&imapd);
    imapd.serve(&[], &[]);
    let script = r#"
import base64, imaplib, ssl, sys
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
M = imaplib.IMAP4("127.0.0.1", port)
assert "LOGINDISABLED" in M.capabilities and "STARTTLS" in M.capabilities, M.capabilities
assert "AUTH=PLAIN" not in M.capabilities, M.capabilities
tag = M._new_tag()
M.send(tag + b" LOGIN " + user.encode() + b" x\r\n")
line = M.readline()
assert line.startswith(tag + b" NO [PRIVACYREQUIRED]"), line
M.starttls(ctx)
assert "AUTH=PLAIN" in M.capabilities and "STARTTLS" not in M.capabilities, M.capabilities
try:
    M.login(user, "wrong")
    raise SystemExit("a wrong password was taken")
except imaplib.IMAP4.error as e:
    assert "[AUTHENTICATIONFAILED]" in str(e), e
typ, data = M.authenticate("PLAIN", lambda _: b"\0" + user.encode() + b"\0" + password.encode())
assert typ == "OK", data
M.select("INBOX")
M.logout()
# SASL-IR: the initial response on the command line
M = imaplib.IMAP4("127.0.0.1", port)
M.starttls(ctx)
tag = M._new_tag()
ir = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
M.send(tag + b" AUTHENTICATE PLAIN " + ir + b"\r\n")
line = M.readline()
assert line.startswith(tag + b" OK [CAPABILITY IMAP4rev1"), line
M.logout()
print("tls ok")
"#;
    assert_eq!(imapd.python(script).trim(), "tls ok");
    imapd.serve(&["-s"], &[]);
    let script = r#"
import imaplib, ssl, sys
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
M = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx)
assert "STARTTLS" not in M.capabilities and "AUTH=PLAIN" in M.capabilities, M.capabilities
M.login(user, password)
assert M.select("INBOX")[0] == "OK"
M.logout()
print("imaps ok")
"#;
    assert_eq!(imapd.python(script).trim(), "imaps ok");
    // -s without a certificate: exit 78 (EX_CONFIG) before anything is said
    fs::remove_file(imapd.sb.home.join("control/smtpcert")).unwrap();
    let out = imapd.sb.run("imapd", &["-s"], b"");
    assert_eq!(out.status.code(), Some(78), "{out:?}");
}

/// A directory user logs in (LDAP, as auth_imap decides logins), and auth_imap's chain runs
/// imapd pre-authenticated: `* PREAUTH`, or the LOGIN's tagged OK with `IMAPLOGINTAG`.
#[test]
fn directory_user_and_the_auth_imap_chain() {
    use crate::harness::slapd;
    use crate::ldap_deliver::Dir;
    let server = slapd::shared();
    let d = Dir::on(server, "imap-login");
    let pw = qmail::passwd::ssha(b"dir pass", b"12345678");
    let home = d.user(server, "ann", &format!("userPassword: {pw}"));
    let port = crate::harness::free_port();
    let mut cmd = std::process::Command::new("tcpserver");
    cmd.env("QMAILHOME", &d.sb.home)
        .env("IMAPD_TEST_DELAY", "100")
        .args(["-HRl0", "127.0.0.1", &port.to_string()])
        .arg(crate::harness::bin("imapd"))
        .args(["-p", "2"]);
    let _server = crate::harness::tcpserver_ready(&mut cmd, port);
    let mut c = Client::connect(port);
    c.line();
    let (_, t) = c.cmd("l1", "LOGIN ann \"dir pass\"");
    assert!(t.starts_with("l1 OK [CAPABILITY IMAP4rev1"), "{t}");
    let u = c.ok("l2", "SELECT INBOX");
    assert!(u.contains(&"* 0 EXISTS".to_string()), "{u:?}");
    c.ok("l3", "LOGOUT");
    assert!(home.join("Maildir/dovecot-uidlist").exists());
    let mut c = Client::connect(port);
    c.line();
    let (_, t) = c.cmd("l4", "LOGIN ann wrong");
    assert_eq!(t, "l4 NO [AUTHENTICATIONFAILED] Authentication failed");
    // the chain: auth_imap reads the courier request on fd 3 and execs imapd as the user
    let request = "imap\nlogin\nann\ndir pass\n";
    let script = format!(
        "exec 3<<'EOF'\n{request}EOF\nexec {} {} Maildir",
        crate::harness::bin("auth_imap").display(),
        crate::harness::bin("imapd").display()
    );
    let out = crate::harness::run_with(
        std::process::Command::new("sh")
            .args(["-c", &script])
            .env("QMAILHOME", &d.sb.home)
            .env("IMAPLOGINTAG", "t7")
            .env_remove("AUTHENTICATED"),
        b"a SELECT INBOX\r\nb LOGOUT\r\n",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("t7 OK [CAPABILITY IMAP4rev1"), "{text}");
    assert!(text.contains("a OK [READ-WRITE] SELECT completed"), "{text}");
    assert!(text.contains("b OK LOGOUT completed"), "{text}");
    let out = crate::harness::run_with(
        std::process::Command::new("sh")
            .args(["-c", &script])
            .env("QMAILHOME", &d.sb.home)
            .env_remove("IMAPLOGINTAG")
            .env_remove("AUTHENTICATED"),
        b"b LOGOUT\r\n",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("* PREAUTH [CAPABILITY IMAP4rev1"), "{text}");
}

/// VmHWM (peak resident set, kB) of this test's imapd (found by its QMAILHOME).
fn imapd_hwm(imapd: &Imapd) -> u64 {
    let pid = imapd.pid();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// SELECT of a 100,000-message folder and `FETCH 1:* (FLAGS UID)` stream: the answer is
/// read as it comes, and imapd's peak memory stays far below the folder's size.
#[test]
fn large_folder_select_and_fetch_stream() {
    let imapd = Imapd::new(&["-p", "2"]);
    let cur = imapd.maildir().join("cur");
    let body = "Subject: s\n\n".to_string() + &"x".repeat(1000) + "\n";
    for i in 0..100_000u32 {
        let name = format!(
            "{}.M{i}P1.test,S={}:2,{}",
            1_700_000_000 + i,
            body.len(),
            if i % 3 == 0 { "S" } else { "" }
        );
        fs::write(cur.join(name), &body).unwrap();
    }
    let out = std::process::Command::new("chown")
        .args(["-R", &format!("{}:{}", imapd.uid, imapd.gid)])
        .arg(imapd.maildir())
        .output()
        .unwrap();
    assert_ok(&out, "chown");
    let mut c = imapd.login();
    let t = Instant::now();
    let u = c.ok("b1", "SELECT INBOX");
    assert!(u.contains(&"* 100000 EXISTS".to_string()), "{u:?}");
    assert!(u.contains(&"* OK [UNSEEN 2] First unseen".to_string()), "{u:?}");
    eprintln!("SELECT of 100,000 messages: {:?}", t.elapsed());
    c.send(b"b2 FETCH 1:* (FLAGS UID)\r\n");
    let mut n = 0u32;
    loop {
        let l = c.line();
        if l.starts_with("b2 ") {
            assert!(l.starts_with("b2 OK"), "{l}");
            break;
        }
        n += 1;
        if n == 1 {
            assert_eq!(l, "* 1 FETCH (FLAGS (\\Seen) UID 1)");
        }
    }
    assert_eq!(n, 100_000);
    let hwm = imapd_hwm(&imapd);
    eprintln!("imapd VmHWM after SELECT and FETCH of 100,000 messages: {hwm} kB");
    // 100,000 messages of 1 KB are 100 MB: the session holds their names, not their bytes
    // (the view, and the UID list while a sync reads and rewrites it: about 700 bytes a
    // message at the peak)
    assert!(hwm < 128 * 1024, "VmHWM {hwm} kB");
    c.ok("b3", "LOGOUT");
}

/// A 200 MB message fetched in 1 MB partials: each answer exact, memory flat.
#[test]
fn a_200_mb_message_in_partial_fetches_with_flat_memory() {
    use std::io::Write as _;
    let imapd = Imapd::new(&["-p", "2"]);
    let path = imapd.maildir().join("cur/1700000000.M1P1.big:2,S");
    {
        let mut f = std::io::BufWriter::new(fs::File::create(&path).unwrap());
        f.write_all(b"Subject: big\n\n").unwrap();
        let line = [b'y'; 99];
        for _ in 0..2_000_000 {
            f.write_all(&line).unwrap();
            f.write_all(b"\n").unwrap();
        }
    }
    std::os::unix::fs::chown(&path, Some(imapd.uid), Some(imapd.gid)).unwrap();
    let header = "Subject: big\r\n\r\n".len() as u64;
    let size = header + 2_000_000 * 101;
    let mut c = imapd.login();
    c.ok("p1", "SELECT INBOX");
    let u = c.ok("p2", "FETCH 1 (RFC822.SIZE)");
    assert_eq!(u, [format!("* 1 FETCH (RFC822.SIZE {size})")]);
    let chunk = 1u64 << 20;
    let mut origin = 0u64;
    let mut k = 0;
    while origin < size {
        let tag = format!("q{k}");
        c.send(format!("{tag} FETCH 1 (BODY.PEEK[]<{origin}.{chunk}>)\r\n").as_bytes());
        let l = c.line();
        let want = chunk.min(size - origin);
        assert_eq!(l, format!("* 1 FETCH (BODY[]<{origin}> {{{want}}}"));
        let mut buf = vec![0u8; want as usize];
        std::io::Read::read_exact(&mut c.r, &mut buf).unwrap();
        // the bytes at this offset of the converted message
        for (j, &b) in buf.iter().enumerate() {
            let at = origin + j as u64;
            let expected = if at < header {
                b"Subject: big\r\n\r\n"[at as usize]
            } else {
                match (at - header) % 101 {
                    99 => b'\r',
                    100 => b'\n',
                    _ => b'y',
                }
            };
            assert_eq!(b, expected, "byte {at}");
        }
        assert_eq!(c.line(), ")");
        assert!(c.line().starts_with(&format!("{tag} OK")));
        origin += want;
        k += 1;
    }
    let hwm = imapd_hwm(&imapd);
    eprintln!("imapd VmHWM after partial fetches of a 200 MB message: {hwm} kB");
    assert!(hwm < 16 * 1024, "VmHWM {hwm} kB");
    c.ok("p3", "LOGOUT");
}

/// The README's "Reading mail over IMAP" on `qmailctl run`'s IMAP listener: imaplib logs
/// in, reads the headers, and files a message into a new folder.
#[test]
fn readme_reading_mail_over_imap_on_qmailctl_run() {
    let imapd = Imapd::new(&["-p", "2"]);
    imapd.put(&imapd.maildir(), "From: ann@example.org\nSubject: for the README\n\nhi\n");
    let port = crate::harness::free_port();
    let addr = format!("127.0.0.1:{port}");
    let args = [&["--listen", "off", "--imap", &addr][..], crate::harness::OTHER_LISTENERS_OFF];
    let run = imapd.sb.start_with(&args.concat());
    assert!(
        crate::harness::wait_until(std::time::Duration::from_secs(30), || {
            std::net::TcpStream::connect(&addr).is_ok()
        }),
        "the IMAP listener did not come up; log:\n{}",
        run.log_text()
    );
    let script = r#"
import imaplib, sys
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1])); m.login(sys.argv[2], sys.argv[3])
m.create("INBOX.Archive"); m.select("INBOX")
typ, data = m.search(None, "ALL")
for n in data[0].split():
    print(m.fetch(n, "(BODY.PEEK[HEADER.FIELDS (From Subject)])")[1][0][1].decode())
if data[0]: m.copy(b"1", "INBOX.Archive")
m.logout()
"#;
    let out = imapd.python(script);
    assert!(
        out.contains("From: ann@example.org") && out.contains("Subject: for the README"),
        "{out}"
    );
    let archived = fs::read_dir(imapd.maildir().join(".Archive/cur")).unwrap().count();
    assert_eq!(archived, 1);
    assert!(run.log_text().contains("IMAP on 127.0.0.1:"), "{}", run.log_text());
}

/// The qmail-LDAP login chain under tcpserver: `imapd -p 2 auth_imap imapd Maildir`. The
/// first imapd takes LOGIN and hands it to auth_imap on descriptor 3; a refused login comes
/// back to it (auth_imap runs it again) as the tagged NO, and the next LOGIN goes through to
/// the second imapd, which answers the tagged OK and serves what was pipelined behind it.
#[test]
fn the_login_chain_under_tcpserver() {
    let mut imapd = Imapd::new(&["-p", "2"]);
    let auth_imap = crate::harness::bin("auth_imap");
    let second = crate::harness::bin("imapd");
    imapd
        .serve(&["-p", "2", auth_imap.to_str().unwrap(), second.to_str().unwrap(), "Maildir"], &[]);
    imapd.put(&imapd.maildir(), "Subject: chained\n\nhello\n");
    let mut c = imapd.connect();
    let greeting = c.line();
    assert!(greeting.starts_with("* OK [CAPABILITY IMAP4rev1"), "{greeting}");
    assert!(!greeting.contains("STARTTLS"), "no STARTTLS across the exec: {greeting}");
    let (_, t) = c.cmd("c1", &format!("LOGIN {USER} wrong"));
    assert_eq!(t, "c1 NO [AUTHENTICATIONFAILED] Authentication failed");
    // LOGIN with SELECT and FETCH pipelined behind it, in one write
    c.send(
        format!("c2 LOGIN {USER} \"{PASS}\"\r\nc3 SELECT INBOX\r\nc4 FETCH 1 (BODY[TEXT])\r\n")
            .as_bytes(),
    );
    let (_, t) = c.until("c2");
    assert!(t.starts_with("c2 OK [CAPABILITY IMAP4rev1"), "{t}");
    let (u, t) = c.until("c3");
    assert!(
        t.starts_with("c3 OK [READ-WRITE]") && u.contains(&"* 1 EXISTS".to_string()),
        "{u:?} {t}"
    );
    let (u, t) = c.until("c4");
    assert!(t.starts_with("c4 OK"), "{t}");
    assert!(u.iter().any(|l| l.contains("hello")), "{u:?}");
    c.ok("c5", "LOGOUT");
}

/// `--listen`: listening workers (never root) serve sessions on threads; a worker ends after
/// `-U` connections and the next connection gets a new one.
#[test]
fn listening_workers_serve_sessions() {
    let imapd = Imapd::new(&["-p", "2"]);
    imapd.put(&imapd.maildir(), "Subject: listened\n\nhi\n");
    let port = crate::harness::free_port();
    let mut cmd = imapd.as_user(&crate::harness::bin("imapd"));
    cmd.args(["-p", "2", "-U", "2", "--listen", &format!("tcp:127.0.0.1:{port}")])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    let _master = crate::harness::Guard(cmd.spawn().unwrap());
    assert!(crate::harness::wait_until(std::time::Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));
    // three sessions at once, then more than one worker's -U
    let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(port)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert!(c.line().starts_with("* OK [CAPABILITY "));
        c.ok(&format!("a{i}"), &format!("LOGIN {USER} \"{PASS}\""));
        let u = c.ok(&format!("b{i}"), "EXAMINE INBOX");
        assert!(u.contains(&"* 1 EXISTS".to_string()), "{u:?}");
    }
    for (i, c) in clients.iter_mut().enumerate() {
        c.ok(&format!("c{i}"), "LOGOUT");
    }
    // as root the workers refuse
    if crate::harness::is_root() {
        let out = imapd.sb.run("imapd", &["--listen", "tcp:127.0.0.1:1"], b"");
        assert_eq!(out.status.code(), Some(100), "{out:?}");
    }
}

/// QUOTA (RFC 9208) from `maildirsize`, after a chain (`MAILDIRQUOTA`): GETQUOTAROOT and
/// GETQUOTA give the one root "", APPEND over the quota is NO [OVERQUOTA], SETQUOTA refused.
#[test]
fn quota_from_maildirsize() {
    let imapd = Imapd::new(&["-p", "2"]);
    imapd.put(&imapd.maildir(), "Subject: one\n\n12345678901234567890\n");
    let mut cmd = imapd.as_user(&crate::harness::bin("imapd"));
    cmd.current_dir(&imapd.home)
        .env("AUTHENTICATED", USER)
        .env("MAILDIRQUOTA", "3000S,2C")
        .env_remove("MAILDIR")
        .env_remove("IMAPLOGINTAG");
    let big = "x".repeat(4000);
    let small = "Subject: two\r\n\r\nsmall\r\n";
    let input = format!(
        "a GETQUOTAROOT INBOX\r\nb APPEND INBOX {{{}+}}\r\n{big}\r\nc APPEND INBOX {{{}+}}\r\n{small}\r\nd GETQUOTA \"\"\r\ne SETQUOTA \"\" (STORAGE 1)\r\nf LOGOUT\r\n",
        big.len(),
        small.len()
    );
    let out = crate::harness::run_with(&mut cmd, input.as_bytes());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("QUOTA QUOTA=RES-STORAGE"), "{text}");
    assert!(
        text.contains("* QUOTAROOT INBOX \"\"\r\n* QUOTA \"\" (STORAGE 1 3 MESSAGE 1 2)\r\na OK"),
        "{text}"
    );
    assert!(text.contains("b NO [OVERQUOTA]"), "{text}");
    assert!(text.contains("c OK [APPENDUID "), "{text}");
    assert!(text.contains("* QUOTA \"\" (STORAGE 1 3 MESSAGE 2 2)\r\nd OK"), "{text}");
    assert!(text.contains("e NO"), "{text}");
}

/// The user deny list (`control/userdeny`, service imap): the login is answered with
/// `* BYE [ALERT] <message>`; a list naming other services only lets the user in.
#[test]
fn userdeny_says_bye_after_login() {
    let imapd = Imapd::new(&["-p", "2"]);
    imapd.sb.control("userdeny", &format!("{USER}\t2\tpop3\tno POP3\n"));
    let mut c = imapd.login();
    c.ok("d1", "SELECT INBOX");
    imapd.sb.control("userdeny", &format!("{USER}\t2\timap\tIMAP is off for you\n"));
    c.send(b"d2 NOOP\r\n");
    assert_eq!(c.line(), "* BYE [ALERT] IMAP is off for you");
    let mut c = imapd.connect();
    c.line();
    c.send(format!("d3 LOGIN {USER} \"{PASS}\"\r\n").as_bytes());
    assert_eq!(c.line(), "* BYE [ALERT] IMAP is off for you");
    assert_eq!(c.line(), "");
}

/// `-D` runs `control/imapddebugcommand` with the program, its pid and the service.
#[test]
fn debug_command_runs_before_serving() {
    let mut imapd = Imapd::new(&["-p", "2"]);
    let out_file = imapd.sb.tmp.path().join("debug-out");
    imapd.sb.control("imapddebugcommand", &format!("echo %s %d %s > {}\n", out_file.display()));
    imapd.serve(&["-p", "2", "-D"], &[]);
    let mut c = imapd.connect();
    assert!(c.line().starts_with("* OK"));
    let text = fs::read_to_string(&out_file).unwrap();
    let words: Vec<&str> = text.split_whitespace().collect();
    assert!(words.len() == 3 && words[0].ends_with("imapd") && words[2] == "imap", "{text}");
    assert!(words[1].parse::<u32>().is_ok(), "{text}");
}

/// The login chain with STARTTLS and with `-s`: the first imapd keeps the TLS session and
/// relays it to the chain over a socket pair; a refused login comes back under TLS too.
#[test]
fn the_login_chain_under_tls() {
    let mut imapd = Imapd::new(&["-p", "2"]);
    certificate(&imapd);
    imapd.put(&imapd.maildir(), "Subject: chained\n\nhello over TLS\n");
    let auth_imap = crate::harness::bin("auth_imap");
    let second = crate::harness::bin("imapd");
    let chain = [auth_imap.to_str().unwrap(), second.to_str().unwrap(), "Maildir"];
    imapd.serve(&chain, &[]);
    let script = r#"
import imaplib, ssl, sys
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def session(m):
    try:
        m.login(user, "wrong")
        raise SystemExit("a wrong password was taken")
    except imaplib.IMAP4.error as e:
        assert "[AUTHENTICATIONFAILED]" in str(e), e
    m.login(user, password)
    m.select("INBOX")
    typ, data = m.fetch("1", "(BODY[TEXT])")
    assert data[0][1] == b"hello over TLS\r\n", data
    m.logout()
m = imaplib.IMAP4("127.0.0.1", port)
assert "LOGINDISABLED" in m.capabilities and "STARTTLS" in m.capabilities, m.capabilities
m.starttls(ctx)
session(m)
print("starttls ok")
"#;
    assert_eq!(imapd.python(script).trim(), "starttls ok");
    let mut args = vec!["-s"];
    args.extend(chain);
    imapd.serve(&args, &[]);
    let script = r#"
import imaplib, ssl, sys
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx)
m.login(user, password)
m.select("INBOX")
assert m.fetch("1", "(BODY[TEXT])")[1][0][1] == b"hello over TLS\r\n"
m.logout()
print("imaps ok")
"#;
    assert_eq!(imapd.python(script).trim(), "imaps ok");
}
