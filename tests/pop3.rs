//! qmail-popup and qmail-pop3d under ucspi-tcp's tcpserver, with tests/fixtures/checkpassword
//! standing in for auth_pop: Python's poplib, mpop, raw sockets for byte-exact transfers and
//! hostile input, STLS and POP3S, timeouts, memory while a 100 MB message streams, and
//! `qmailctl run`'s POP3 listener.

use crate::harness::{assert_ok, bin, free_port, pids_of, run_with, wait_until, Guard, Sandbox};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const USER: &str = "joe";
const PASS: &str = "secret pass";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpassword")
}

/// A sandbox with a user's Maildir and tcpserver running
/// `qmail-popup mx.example.org checkpassword qmail-pop3d Maildir` on a free port.
struct Pop {
    sb: Sandbox,
    home: PathBuf,
    port: u16,
    server: Option<Guard>,
}

impl Pop {
    fn new(env: &[(&str, &str)]) -> Pop {
        let sb = Sandbox::new();
        let (_, _, home) = sb.user_home(USER);
        let mut pop = Pop { sb, home, port: 0, server: None };
        pop.serve(env);
        pop
    }

    /// (Re)start tcpserver with `env` added.
    fn serve(&mut self, env: &[(&str, &str)]) {
        self.server = None;
        let port = free_port();
        let mut cmd = Command::new("tcpserver");
        for k in ["POP3S", "POP3TLSREQUIRED", "SSLCERT", "MAILDIR", "MAILDIRQUOTA", "POP3TEST_EXIT"]
        {
            cmd.env_remove(k);
        }
        cmd.env("QMAILHOME", &self.sb.home)
            .env("POP3TEST_USER", USER)
            .env("POP3TEST_PASS", PASS)
            .env("POP3TEST_HOME", &self.home);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(["-HRl0", "127.0.0.1", &port.to_string()])
            .arg(bin("qmail-popup"))
            .arg("mx.example.org")
            .arg(fixture())
            .arg(bin("qmail-pop3d"))
            .arg("Maildir")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let guard = Guard(cmd.spawn().expect("tcpserver (ucspi-tcp) must be installed"));
        let addr = format!("127.0.0.1:{port}");
        assert!(
            wait_until(Duration::from_secs(10), || TcpStream::connect(&addr).is_ok()),
            "tcpserver did not start on {addr}"
        );
        self.port = port;
        self.server = Some(guard);
    }

    fn maildir(&self) -> PathBuf {
        self.home.join("Maildir")
    }

    /// Put a message into `new/` as delivered `age` seconds ago; its file name.
    fn put(&self, age: u64, n: usize, body: &[u8]) -> String {
        put(&self.maildir(), age, n, body)
    }

    /// The sorted file names of `Maildir/<sub>`.
    fn names(&self, sub: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.maildir().join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    /// Run a Python script with `port` (and the user and password) as its arguments; its
    /// stdout.
    fn python(&self, script: &str) -> String {
        let out = run_with(
            Command::new("python3").args(["-c", script, &self.port.to_string(), USER, PASS]),
            b"",
        );
        assert_ok(&out, "python3");
        String::from_utf8(out.stdout).unwrap()
    }

    fn connect(&self) -> Client {
        Client::connect(self.port)
    }

    /// Connect and log in.
    fn login(&self) -> Client {
        let mut c = self.connect();
        assert!(c.line().starts_with("+OK <"), "greeting");
        c.ok(&format!("USER {USER}"));
        c.ok(&format!("PASS {PASS}"));
        c
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Put a message into `maildir/new/` as delivered `age` seconds ago, numbered `n`.
fn put(maildir: &Path, age: u64, n: usize, body: &[u8]) -> String {
    let name = format!("{}.M{n}P1Q{n}.test,S={}", now() - age, body.len());
    fs::write(maildir.join("new").join(&name), body).unwrap();
    name
}

/// A raw POP3 client: lines out, lines and bytes in, with a read timeout.
struct Client {
    out: TcpStream,
    input: BufReader<TcpStream>,
}

impl Client {
    fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Client { out: s.try_clone().unwrap(), input: BufReader::new(s) }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.out.write_all(bytes).unwrap();
    }

    /// One line, without its CRLF ("" at end of input, or when the server reset the
    /// connection, as it does closing with unread input).
    fn line(&mut self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = self.input.read_until(b'\n', &mut buf) {
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
            return String::new();
        }
        assert!(buf.is_empty() || buf.ends_with(b"\r\n"), "no CRLF: {buf:?}");
        String::from_utf8_lossy(&buf).trim_end_matches("\r\n").to_string()
    }

    /// Send a command and return the answer line.
    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.line()
    }

    /// Send a command whose answer must start with +OK.
    fn ok(&mut self, line: &str) -> String {
        let answer = self.cmd(line);
        assert!(answer.starts_with("+OK"), "{line}: {answer}");
        answer
    }

    /// The bytes of a multi-line answer up to and including `.\r\n`.
    fn multiline(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        loop {
            let mut buf = Vec::new();
            let n = self.input.read_until(b'\n', &mut buf).unwrap();
            assert!(n > 0, "end of input inside a multi-line answer");
            all.extend_from_slice(&buf);
            if buf == b".\r\n" {
                return all;
            }
        }
    }

    /// Everything up to the end of input.
    fn rest(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        let _ = self.input.read_to_end(&mut v);
        v
    }
}

#[test]
fn pop3_poplib_session_retrieves_and_deletes_on_quit() {
    let pop = Pop::new(&[]);
    let a = pop.put(300, 1, b"Subject: one\n\nfirst body\nline 2\n");
    let b = pop.put(200, 2, b"Subject: two\n\nsecond\n");
    let c = pop.put(100, 3, b"Subject: three\n\nthird\n");
    let out = pop.python(
        r#"
import poplib, sys
p = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=30)
print(p.getwelcome().decode())
p.user(sys.argv[2]); print(p.pass_(sys.argv[3]).decode())
print(p.stat())
print(p.list()[1])
print(p.list(2).decode())
print(p.uidl()[1])
print(p.uidl(3).decode())
print(p.top(1, 0)[1])
print(p.top(1, 1)[1])
print(p.retr(2)[1])
print(p.dele(1).decode())
try:
    p.retr(1)
except poplib.error_proto as e:
    print(e)
print(p.stat())
print(p.quit().decode())
"#,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("+OK <") && lines[0].ends_with("@mx.example.org>"), "{out}");
    let sizes = [32u64, 21, 22];
    let want = [
        "+OK ".to_string(),
        format!("(3, {})", sizes.iter().sum::<u64>()),
        format!("[b'1 {}', b'2 {}', b'3 {}']", sizes[0], sizes[1], sizes[2]),
        format!("+OK 2 {}", sizes[1]),
        format!("[b'1 {a}', b'2 {b}', b'3 {c}']"),
        format!("+OK 3 {c}"),
        "[b'Subject: one', b'', b'']".to_string(),
        "[b'Subject: one', b'', b'first body', b'']".to_string(),
        "[b'Subject: two', b'', b'second', b'']".to_string(),
        "+OK ".to_string(),
        "b'-ERR already deleted'".to_string(),
        format!("(2, {})", sizes[1] + sizes[2]),
        "+OK ".to_string(),
    ];
    assert_eq!(lines[1..], want.iter().map(String::as_str).collect::<Vec<_>>()[..], "{out}");
    // QUIT: the deleted one is gone, the others moved to cur/ with :2,
    assert!(pop.names("new").is_empty());
    assert_eq!(pop.names("cur"), [format!("{b}:2,"), format!("{c}:2,")]);
    // the UIDs stay the same after the move
    let out = pop.python(
        r#"
import poplib, sys
p = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=30)
p.user(sys.argv[2]); p.pass_(sys.argv[3])
print(p.uidl()[1]); p.quit()
"#,
    );
    assert_eq!(out.trim(), format!("[b'1 {b}', b'2 {c}']"));
}

#[test]
fn pop3_rset_last_and_errors() {
    let pop = Pop::new(&[]);
    for i in 1..=3 {
        pop.put(100, i, format!("m{i}\n").as_bytes());
    }
    let mut c = pop.login();
    assert_eq!(c.cmd("LAST"), "+OK 0");
    c.ok("DELE 2");
    assert_eq!(c.cmd("LAST"), "+OK 2");
    assert_eq!(c.cmd("DELE 2"), "-ERR already deleted");
    assert_eq!(c.cmd("LIST 2"), "-ERR already deleted");
    assert_eq!(c.cmd("STAT"), "+OK 2 6");
    c.ok("RSET");
    assert_eq!(c.cmd("LAST"), "+OK 0");
    assert_eq!(c.cmd("STAT"), "+OK 3 9");
    for (cmd, want) in [
        ("RETR 0", "-ERR messages are counted from 1"),
        ("RETR 4", "-ERR not that many messages"),
        ("RETR", "-ERR syntax error"),
        ("DELE x", "-ERR syntax error"),
        ("TOP 99999999999999999999999 1", "-ERR not that many messages"),
        ("XTND", "-ERR unimplemented"),
        ("USER joe", "-ERR unimplemented"),
        ("noop", "+OK "),
    ] {
        assert_eq!(c.cmd(cmd), want, "{cmd}");
    }
    c.send(b"CAPA\r\n");
    let capa = String::from_utf8(c.multiline()).unwrap();
    assert!(capa.starts_with("+OK ") && capa.contains("\r\nUIDL\r\n") && capa.contains("TOP"));
    c.ok("QUIT");
    // RSET undid the deletion
    assert_eq!(pop.names("cur").len(), 3);
}

#[test]
fn pop3_a_client_that_leaves_without_quit_changes_nothing() {
    let pop = Pop::new(&[]);
    let names: Vec<String> = (1..=3).map(|i| pop.put(100, i, b"x\n")).collect();
    let mut c = pop.login();
    c.ok("DELE 1");
    c.ok("DELE 2");
    c.send(b"RETR 3\r\n");
    c.line();
    c.multiline();
    drop(c);
    // the session ends on end of input: wait until its qmail-pop3d (working in this home)
    // is gone, then nothing may have changed
    let home = fs::canonicalize(&pop.home).unwrap();
    let serving = || {
        pids_of(&["qmail-pop3d"])
            .into_iter()
            .any(|pid| fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == home))
    };
    assert!(wait_until(Duration::from_secs(30), || !serving()), "the session did not end");
    assert_eq!(pop.names("new"), names);
    assert!(pop.names("cur").is_empty());
}

#[test]
fn pop3_transfer_is_byte_exact() {
    let pop = Pop::new(&[]);
    let body: &[u8] = b"Subject: dots\n.starts with a dot\n\n.\n..\nmid . dot\nbare\rcr\nnul\0byte\n\xff\xfe\nno final newline";
    pop.put(100, 1, body);
    let mut c = pop.login();
    assert_eq!(c.cmd("RETR 1"), format!("+OK {} octets", body.len()));
    let got = c.multiline();
    let want: &[u8] = b"Subject: dots\r\n..starts with a dot\r\n\r\n..\r\n...\r\nmid . dot\r\nbare\rcr\r\nnul\0byte\r\n\xff\xfe\r\nno final newline\r\n\r\n.\r\n";
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
    assert_eq!(got, want);
    assert!(c.cmd("TOP 1 2").starts_with("+OK"));
    let want: &[u8] = b"Subject: dots\r\n..starts with a dot\r\n\r\n..\r\n...\r\n\r\n.\r\n";
    assert_eq!(c.multiline(), want);
    assert!(c.cmd("TOP 1").starts_with("+OK"));
    assert!(c.multiline().ends_with(b"no final newline\r\n\r\n.\r\n"));
    c.ok("QUIT");
}

#[test]
fn pop3_pipelined_commands_after_pass_reach_qmail_pop3d() {
    let pop = Pop::new(&[]);
    pop.put(100, 1, b"abc\n");
    let mut c = pop.connect();
    c.line();
    c.send(format!("USER {USER}\r\nPASS {PASS}\r\nSTAT\r\nQUIT\r\n").as_bytes());
    let all = String::from_utf8(c.rest()).unwrap();
    assert_eq!(all, "+OK \r\n+OK \r\n+OK 1 4\r\n+OK \r\n");
}

#[test]
fn pop3_authorization_state() {
    let pop = Pop::new(&[]);
    let mut c = pop.connect();
    let greeting = c.line();
    let stamp = greeting.strip_prefix("+OK ").unwrap();
    assert!(stamp.starts_with('<') && stamp.ends_with("@mx.example.org>"), "{greeting}");
    for (cmd, want) in [
        ("STAT", "-ERR authorization first"),
        ("PASS x", "-ERR USER first"),
        ("USER", "-ERR syntax error"),
        ("NOOP", "+OK "),
        ("STLS", "-ERR STLS not available"),
        ("APOP joe", "-ERR syntax error"),
        ("USER joe", "+OK "),
        ("PASS", "-ERR syntax error"),
    ] {
        assert_eq!(c.cmd(cmd), want, "{cmd}");
    }
    c.send(b"CAPA\r\n");
    let capa = String::from_utf8(c.multiline()).unwrap();
    assert_eq!(
        capa,
        "+OK capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\n\
         IMPLEMENTATION qmail-ldap-rs\r\n.\r\n"
    );
    // one authentication per connection: a wrong password ends it
    assert_eq!(c.cmd("PASS wrong"), "-ERR authorization failed");
    assert_eq!(c.line(), "");
    // APOP hands the digest on as the password (the stand-in takes it as one)
    let mut c = pop.connect();
    c.line();
    assert_eq!(c.cmd(&format!("APOP {USER} {PASS}")), "+OK ");
    c.ok("QUIT");
    let mut c = pop.connect();
    c.line();
    assert_eq!(c.cmd("QUIT"), "+OK ");
    assert_eq!(c.line(), "");
}

/// Every row of the exit-code table, with qmail-popup on pipes (no tcpserver: its line
/// reading falls back to a byte at a time).
#[test]
fn pop3_popup_answers_each_exit_code_of_the_subprogram() {
    let sb = Sandbox::new();
    use qmail::auth::checkpassword::CheckExit;
    let mut rows: Vec<(i32, &str)> =
        CheckExit::ALL.iter().map(|e| (i32::from(e.code()), e.text())).collect();
    rows.push((100, "temporary error"));
    for (code, text) in rows {
        let out = run_with(
            sb.cmd("qmail-popup")
                .arg("host.test")
                .arg(fixture())
                .arg("true")
                .env("POP3TEST_EXIT", code.to_string()),
            b"USER joe\r\nPASS pw\r\nSTAT\r\n",
        );
        let text_out = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text_out.starts_with("+OK <"), "{text_out}");
        assert!(text_out.ends_with(&format!("+OK \r\n-ERR {text}\r\n")), "{code}: {text_out}");
        assert_eq!(out.status.code(), Some(1), "{code}");
    }
    // exit 0: the sub-program served the session, qmail-popup says nothing more
    let out = run_with(
        sb.cmd("qmail-popup").arg("host.test").arg(fixture()).arg("true").env("POP3TEST_EXIT", "0"),
        b"USER joe\r\nPASS pw\r\n",
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("+OK \r\n"));
    assert_eq!(out.status.code(), Some(0));
    // a sub-program that cannot be started; no arguments
    let out = run_with(
        sb.cmd("qmail-popup").args(["h", "/nonexistent/checkpassword"]),
        b"USER a\r\nPASS b\r\n",
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("-ERR unable to start subprogram\r\n"));
    let out = run_with(&mut sb.cmd("qmail-popup"), b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("-ERR usage"));
}

#[test]
fn pop3_mpop_fetches_1000_messages_and_leaves_the_maildir_empty() {
    let pop = Pop::new(&[]);
    for i in 0..1000 {
        pop.put(100 + (i as u64 % 7), i, format!("Subject: {i}\n\nmessage {i}\n.\n").as_bytes());
    }
    let target = pop.sb.tmp.path().join("fetched");
    for sub in ["", "tmp", "new", "cur"] {
        fs::create_dir_all(target.join(sub)).unwrap();
    }
    let rc = pop.sb.tmp.path().join("mpoprc");
    fs::write(&rc, "").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&rc, fs::Permissions::from_mode(0o600)).unwrap();
    let out = run_with(
        Command::new("mpop")
            .arg("-C")
            .arg(&rc)
            .args([
                "--host=127.0.0.1",
                &format!("--port={}", pop.port),
                &format!("--user={USER}"),
                &format!("--passwordeval=echo '{PASS}'"),
                "--auth=user",
                "--tls=off",
                "--keep=off",
                "--only-new=off",
                "--received-header=off",
                "-q",
            ])
            .arg(format!("--delivery=maildir,{}", target.display()))
            .arg(format!("--uidls-file={}", pop.sb.tmp.path().join("uidls").display()))
            .env("HOME", pop.sb.tmp.path()),
        b"",
    );
    assert_ok(&out, "mpop");
    assert!(pop.names("new").is_empty() && pop.names("cur").is_empty(), "left on the server");
    let got: Vec<PathBuf> =
        fs::read_dir(target.join("new")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(got.len(), 1000);
    let mut subjects: Vec<String> = got
        .iter()
        .map(|p| {
            let text = fs::read_to_string(p).unwrap();
            assert!(text.ends_with("\n.\n\n"), "{text:?}");
            text.lines().next().unwrap().to_string()
        })
        .collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), 1000);
}

/// VmHWM (peak resident set, kB) of process `pid`.
fn vm_hwm(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn pop3_retr_of_a_100_mb_message_streams_in_small_memory() {
    let pop = Pop::new(&[]);
    let name = format!("{}.M1P1Q1.big", now() - 100);
    let path = pop.maildir().join("new").join(&name);
    {
        let mut f = std::io::BufWriter::new(fs::File::create(&path).unwrap());
        f.write_all(b"Subject: big\n\n").unwrap();
        let line = [b"x".repeat(998), b"\n".to_vec()].concat();
        for _ in 0..100_000 {
            f.write_all(&line).unwrap();
        }
        f.write_all(b".\n").unwrap();
    }
    let size = fs::metadata(&path).unwrap().len();
    let mut c = pop.login();
    assert_eq!(c.cmd("RETR 1"), format!("+OK {size} octets"));
    // read it all, counting; the transfer adds a CR per line, a dot, and the terminator
    let mut total = 0u64;
    let mut tail = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    // a CR for each of the 100,003 lines, the stuffed dot, the extra line and the terminator
    let want = size + 100_003 + 1 + 5;
    while total < want {
        let n = c.input.read(&mut buf).unwrap();
        assert!(n > 0, "end of input after {total} bytes");
        total += n as u64;
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 64 {
            tail.drain(..tail.len() - 64);
        }
    }
    assert_eq!(total, want);
    assert!(tail.ends_with(b"x\r\n..\r\n\r\n.\r\n"));
    let home = pop.home.to_string_lossy().to_string();
    let pids = pids_of(&["qmail-pop3d", "Maildir"]);
    let hwm: Vec<u64> = pids
        .iter()
        .filter(|&&p| {
            fs::read_link(format!("/proc/{p}/cwd"))
                .is_ok_and(|d| d.to_string_lossy().starts_with(&home))
        })
        .filter_map(|&p| vm_hwm(p))
        .collect();
    assert_eq!(hwm.len(), 1, "one qmail-pop3d of this test: {pids:?}");
    eprintln!("qmail-pop3d VmHWM after RETR of {size} bytes: {} kB", hwm[0]);
    assert!(hwm[0] < 16 * 1024, "VmHWM {} kB", hwm[0]);
    c.ok("QUIT");
}

#[test]
fn pop3_deletions_are_subtracted_from_maildirsize() {
    let pop = Pop::new(&[("MAILDIRQUOTA", "1000000S,100C")]);
    let bodies: [&[u8]; 3] = [b"12345\n", b"1234567890\n", b"abc\n"];
    for (i, b) in bodies.iter().enumerate() {
        pop.put(100, i, b);
    }
    fs::write(pop.maildir().join("maildirsize"), "1000000S,100C\n21 3\n").unwrap();
    let mut c = pop.login();
    c.ok("DELE 1");
    c.ok("DELE 2");
    c.ok("QUIT");
    assert_eq!(
        fs::read_to_string(pop.maildir().join("maildirsize")).unwrap(),
        "1000000S,100C\n21 3\n-17 -2\n"
    );
    // without MAILDIRQUOTA the file is left alone
    let mut pop = pop;
    pop.serve(&[]);
    pop.put(100, 7, b"x\n");
    let mut c = pop.login();
    c.ok("DELE 1");
    c.ok("DELE 2");
    c.ok("QUIT");
    assert!(fs::read_to_string(pop.maildir().join("maildirsize")).unwrap().ends_with("-17 -2\n"));
    assert!(pop.names("cur").is_empty() && pop.names("new").is_empty());
}

#[test]
fn pop3_maildir_listing_order_tmp_cleanup_and_maildir_variable() {
    let pop = Pop::new(&[]);
    let md = pop.maildir();
    // delivery order, not name order; dot files and this second's deliveries are not listed
    let late = put(&md, 10, 1, b"late\n");
    let early = put(&md, 1000, 2, b"early\n");
    fs::write(md.join("cur/.hidden"), "x").unwrap();
    let future = format!("{}.M3P3Q3.test", now() + 3600);
    fs::write(md.join("new").join(&future), "future\n").unwrap();
    // no number at the start: the modification time
    fs::write(md.join("cur/noname:2,S"), "old\n").unwrap();
    let old = SystemTime::now() - Duration::from_secs(5000);
    fs::File::options()
        .write(true)
        .open(md.join("cur/noname:2,S"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    // tmp/: a file not read for 36 hours goes, a fresh one stays
    fs::write(md.join("tmp/stale"), "x").unwrap();
    fs::write(md.join("tmp/fresh"), "x").unwrap();
    let stale = SystemTime::now() - Duration::from_secs(37 * 3600);
    fs::File::options()
        .write(true)
        .open(md.join("tmp/stale"))
        .unwrap()
        .set_times(fs::FileTimes::new().set_accessed(stale).set_modified(stale))
        .unwrap();
    let mut c = pop.login();
    c.send(b"UIDL\r\n");
    let uidl = String::from_utf8(c.multiline()).unwrap();
    assert_eq!(uidl, format!("+OK \r\n1 noname\r\n2 {early}\r\n3 {late}\r\n.\r\n"));
    c.ok("QUIT");
    assert_eq!(pop.names("tmp"), ["fresh"]);
    assert_eq!(pop.names("new"), [future]);
    // MAILDIR overrides the argument; a missing Maildir is said so
    let mut pop = pop;
    fs::create_dir_all(pop.home.join("Other/new")).unwrap();
    fs::create_dir_all(pop.home.join("Other/cur")).unwrap();
    put(&pop.home.join("Other"), 100, 9, b"other\n");
    pop.serve(&[("MAILDIR", "Other")]);
    let mut c = pop.login();
    assert_eq!(c.cmd("STAT"), "+OK 1 6");
    c.ok("QUIT");
    pop.serve(&[("MAILDIR", "Nonesuch")]);
    let mut c = pop.connect();
    c.line();
    c.ok(&format!("USER {USER}"));
    assert_eq!(c.cmd(&format!("PASS {PASS}")), "-ERR this user has no $HOME/Maildir");
    assert_eq!(c.line(), "");
}

#[test]
fn pop3_hostile_input() {
    let pop = Pop::new(&[]);
    pop.put(100, 1, b"x\n");
    // a line over the limit, in the authorization state and in the transaction state
    for logged_in in [false, true] {
        let mut c = if logged_in { pop.login() } else { pop.connect() };
        if !logged_in {
            c.line();
        }
        // the server may close (and reset) before the whole line is written
        let _ = c.out.write_all(&[vec![b'A'; 4096], b"\r\n".to_vec()].concat());
        assert_eq!(c.line(), "-ERR line too long");
        assert_eq!(c.line(), "");
    }
    // a megabyte without a line end: answered and closed after the first kilobyte
    let mut c = pop.connect();
    c.line();
    let _ = c.out.write_all(&vec![b'x'; 1 << 20]);
    assert_eq!(c.line(), "-ERR line too long");
    // NULs and binary junk are just unknown commands; 10,000 of them, then a login works
    let mut c = pop.connect();
    c.line();
    let junk = b"\0\0\0 \xff\r\nST\0AT\r\nuser\0\r\n".repeat(3334);
    let writer = {
        let mut out = c.out.try_clone().unwrap();
        std::thread::spawn(move || out.write_all(&junk).unwrap())
    };
    for i in 0..10_002 {
        let line = c.line();
        assert!(line == "-ERR authorization first", "{i}: {line}");
    }
    writer.join().unwrap();
    c.ok(&format!("USER {USER}"));
    c.ok(&format!("PASS {PASS}"));
    let writer = {
        let mut out = c.out.try_clone().unwrap();
        std::thread::spawn(move || out.write_all(&b"\0bad\xff\r\n".repeat(10_000)).unwrap())
    };
    for i in 0..10_000 {
        assert_eq!(c.line(), "-ERR unimplemented", "{i}");
    }
    writer.join().unwrap();
    assert_eq!(c.cmd("STAT"), "+OK 1 2");
    c.ok("QUIT");
}

#[test]
fn pop3_timeouts_end_the_session_and_change_nothing() {
    let pop = Pop::new(&[]);
    pop.sb.control("timeoutpop3", "1\n");
    let name = pop.put(100, 1, b"x\n");
    // authorization state
    let mut c = pop.connect();
    c.line();
    let t = Instant::now();
    assert_eq!(c.line(), "");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // transaction state: the DELE is not carried out, nothing moves
    let mut c = pop.login();
    c.ok("DELE 1");
    let t = Instant::now();
    assert_eq!(c.line(), "");
    assert!(t.elapsed() >= Duration::from_millis(900) && t.elapsed() < Duration::from_secs(10));
    assert_eq!(pop.names("new"), [name]);
}

/// `qmailctl tls-selfsigned` for the sandbox: control/smtpcert.
fn certificate(sb: &Sandbox) {
    let home = sb.home.to_string_lossy().to_string();
    let out = sb.run("qmailctl", &["tls-selfsigned", "--home", &home, "--days", "30"], b"");
    assert_ok(&out, "qmailctl tls-selfsigned");
}

#[test]
fn pop3_stls_and_pop3s() {
    let mut pop = Pop::new(&[]);
    certificate(&pop.sb);
    pop.put(100, 1, b"Subject: tls\n\n.dot\n");
    pop.serve(&[]);
    let script = r#"
import poplib, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
if sys.argv[4] == "stls":
    p = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=30)
    print(sorted(p.capa().keys()))
    print(p.stls(ctx).decode())
    print(sorted(p.capa().keys()))
else:
    p = poplib.POP3_SSL("127.0.0.1", int(sys.argv[1]), timeout=30, context=ctx)
print(p.sock.version())
p.user(sys.argv[2]); print(p.pass_(sys.argv[3]).decode())
print(p.stat())
print(p.retr(1)[1])
print(p.dele(1).decode())
print(p.quit().decode())
"#;
    let run = |pop: &Pop, mode: &str| -> String {
        let out = run_with(
            Command::new("python3").args(["-c", script, &pop.port.to_string(), USER, PASS, mode]),
            b"",
        );
        assert_ok(&out, "python3");
        String::from_utf8(out.stdout).unwrap()
    };
    let out = run(&pop, "stls");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "['IMPLEMENTATION', 'STLS', 'TOP', 'UIDL', 'USER']", "{out}");
    assert_eq!(lines[1], "+OK begin TLS negotiation");
    assert_eq!(lines[2], "['IMPLEMENTATION', 'TOP', 'UIDL', 'USER']");
    assert!(lines[3].starts_with("TLSv1."), "{out}");
    assert_eq!(
        lines[4..],
        ["+OK ", "(1, 19)", "[b'Subject: tls', b'', b'.dot', b'']", "+OK ", "+OK "]
    );
    assert!(pop.names("new").is_empty() && pop.names("cur").is_empty());
    // POP3S: TLS from the first byte
    pop.put(100, 2, b"Subject: tls\n\n.dot\n");
    pop.serve(&[("POP3S", "1")]);
    let out = run(&pop, "pop3s");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("TLSv1."), "{out}");
    assert_eq!(
        lines[1..],
        ["+OK ", "(1, 19)", "[b'Subject: tls', b'', b'.dot', b'']", "+OK ", "+OK "]
    );
    assert!(pop.names("new").is_empty() && pop.names("cur").is_empty());
    // POP3TLSREQUIRED: no login before STLS, USER not offered
    pop.serve(&[("POP3TLSREQUIRED", "1")]);
    let mut c = pop.connect();
    c.line();
    assert_eq!(c.cmd("USER joe"), "-ERR TLS required: STLS first");
    assert_eq!(c.cmd("PASS x"), "-ERR TLS required: STLS first");
    c.send(b"CAPA\r\n");
    assert!(!String::from_utf8(c.multiline()).unwrap().contains("USER"));
    // a client pipelining after STLS in the clear: the handshake fails, nothing is injected
    let mut c = pop.connect();
    c.line();
    c.send(b"STLS\r\nUSER joe\r\n");
    assert_eq!(c.line(), "+OK begin TLS negotiation");
    let rest = c.rest();
    assert!(!rest.windows(3).any(|w| w == b"+OK"), "{rest:?}");
}

/// A checkpassword failure under TLS is still answered, through TLS; a client that pipelines
/// after PASS under TLS has its commands relayed to qmail-pop3d.
#[test]
fn pop3_tls_relay_pipelining_and_failure() {
    let mut pop = Pop::new(&[]);
    certificate(&pop.sb);
    pop.put(100, 1, b"abc\n");
    pop.serve(&[("POP3S", "1")]);
    let out = pop.python(
        r#"
import socket, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def session(text):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30))
    s.sendall(text.encode())
    got = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        got += d
    return got
print(session("USER %s\r\nPASS %s\r\nSTAT\r\nRETR 1\r\nQUIT\r\n" % (sys.argv[2], sys.argv[3])))
print(session("USER %s\r\nPASS wrong\r\n" % sys.argv[2]))
"#,
    );
    let lines: Vec<&str> = out.lines().collect();
    let first = lines[0].split_once("\\r\\n").unwrap().1;
    assert_eq!(
        first,
        "+OK \\r\\n+OK \\r\\n+OK 1 4\\r\\n+OK 4 octets\\r\\nabc\\r\\n\\r\\n.\\r\\n+OK \\r\\n'"
    );
    assert!(lines[1].ends_with("+OK \\r\\n-ERR authorization failed\\r\\n'"), "{out}");
    assert!(pop.names("new").is_empty());
    assert_eq!(pop.names("cur").len(), 1);
}

#[test]
fn pop3_qmailctl_run_listener_greets() {
    let sb = Sandbox::new();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let run = sb.start_with(&[
        "--listen",
        "off",
        "--smtps",
        "off",
        "--submission",
        "off",
        "--pop3",
        &addr,
    ]);
    assert!(
        wait_until(Duration::from_secs(30), || TcpStream::connect(&addr).is_ok()),
        "the POP3 listener did not come up; log:\n{}",
        run.log_text()
    );
    let mut c = Client::connect(port);
    let greeting = c.line();
    assert!(greeting.starts_with("+OK <") && greeting.ends_with("@mx.example.org>"), "{greeting}");
    assert_eq!(c.cmd("QUIT"), "+OK ");
    assert!(run.log_text().contains(&format!("POP3 on {addr}")), "{}", run.log_text());
    // POP3S needs a certificate; with one, it runs on its own port
    drop(run);
    let out = sb.run(
        "qmailctl",
        &["run", "--home", &sb.home.to_string_lossy(), "--listen", "off", "--pop3s", "127.0.0.1:1"],
        b"",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a certificate"));
}
