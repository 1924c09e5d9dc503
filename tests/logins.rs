//! Logging in, end to end with the real programs: POP3 through qmail-popup, auth_pop and
//! qmail-pop3d under tcpserver for a directory user and a `users/passwd` user (Python's
//! poplib); POP-before-SMTP from a POP3 login (auth_pop -d pbsadd) to relaying through
//! pbscheck and qmail-smtpd, its expiry and a wrong secret; and the README's walk-through on
//! `qmailctl run`: a password, mail fetched with poplib, mail sent with STARTTLS and AUTH on
//! the submission port.
//!
//! auth_pop switches to the user's ids, so its tcpserver runs as root when the tests do (as
//! CI does); otherwise auth_pop runs as the user it finds, the tests' own.

use crate::harness::slapd;
use crate::harness::*;
use crate::ldap_deliver::Dir;
use std::fs;
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const PASSWORD: &str = "pop pass 1";

/// tcpserver on a free port running `qmail-popup mx.example.org bin/auth_pop [-d bin/pbsadd]
/// bin/qmail-pop3d ./Maildir/` for `sb`.
fn pop3_server(sb: &Sandbox, pbs: bool) -> (Guard, u16) {
    let port = free_port();
    let mut cmd = Command::new("tcpserver");
    for k in ["POP3S", "POP3TLSREQUIRED", "SSLCERT", "MAILDIR", "NOPBS"] {
        cmd.env_remove(k);
    }
    cmd.env("QMAILHOME", &sb.home)
        .args(["-HRl0", "127.0.0.1", &port.to_string()])
        .arg(bin("qmail-popup"))
        .arg("mx.example.org")
        .arg(bin("auth_pop"));
    if pbs {
        cmd.arg("-d").arg(bin("pbsadd"));
    }
    cmd.arg(bin("qmail-pop3d")).arg("./Maildir/");
    (tcpserver_ready(&mut cmd, port), port)
}

/// A message in `home`'s Maildir/new, delivered a minute ago, owned like the Maildir.
fn put(home: &Path, body: &str) {
    use std::os::unix::fs::MetadataExt;
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() - 60;
    let path = home.join(format!("Maildir/new/{t}.M1P1.test"));
    fs::write(&path, body).unwrap();
    let meta = fs::metadata(home.join("Maildir")).unwrap();
    std::os::unix::fs::chown(&path, Some(meta.uid()), Some(meta.gid())).unwrap();
}

/// poplib: log in as `user`, list, fetch the first message, delete it, quit; prints
/// `COUNT\nMESSAGE` or the error.
fn poplib(port: u16, user: &str, pw: &str) -> String {
    let script = r#"
import poplib, sys
p = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=30)
try:
    p.user(sys.argv[2]); p.pass_(sys.argv[3])
except poplib.error_proto as e:
    print("ERR", e.args[0].decode()); sys.exit(0)
n, size = p.stat()
print(n)
if n:
    print(b"\n".join(p.retr(1)[1]).decode())
    p.dele(1)
p.quit()
"#;
    let out =
        Command::new("python3").args(["-c", script, &port.to_string(), user, pw]).output().unwrap();
    assert_ok(&out, "python3 poplib");
    String::from_utf8(out.stdout).unwrap()
}

/// A directory user and a `users/passwd` user fetch and delete their mail with poplib
/// through auth_pop; a wrong password and a disabled account get their -ERR texts.
#[test]
fn poplib_through_auth_pop_for_directory_and_users_passwd_users() {
    let server = slapd::shared();
    let d = Dir::on(server, "logins-pop");
    let pw = qmail::passwd::ssha(PASSWORD.as_bytes(), b"12345678");
    let joe = d.user(server, "joe", &format!("userPassword: {pw}"));
    d.user(server, "off", &format!("userPassword: {pw}\naccountStatus: disabled"));
    put(&joe, "Subject: for joe\n\nhello joe\n");
    // kim: users/cdb and users/passwd only
    let (uid, gid, kim) = d.sb.user_home("kim");
    d.sb.assign(&[("kim", uid, gid, &kim)]);
    let home = d.sb.home.to_str().unwrap().to_string();
    let out = d.sb.run(
        "qmailctl",
        &["passwd", "--home", &home, "kim", "--password-stdin"],
        b"kim's pass\n",
    );
    assert_ok(&out, "qmailctl passwd");
    put(&kim, "Subject: for kim\n\nhello kim\n");
    let (_server, port) = pop3_server(&d.sb, false);
    let got = poplib(port, "joe", PASSWORD);
    assert!(got.starts_with("1\n") && got.contains("hello joe"), "{got}");
    assert!(
        Sandbox::maildir_new(&joe).is_empty()
            && fs::read_dir(joe.join("Maildir/cur")).unwrap().count() == 0
    );
    let got = poplib(port, "kim", "kim's pass");
    assert!(got.starts_with("1\n") && got.contains("hello kim"), "{got}");
    assert_eq!(poplib(port, "joe", PASSWORD), "0\n", "deleted on QUIT");
    let t = std::time::Instant::now();
    assert_eq!(poplib(port, "joe", "wrong").trim(), "ERR -ERR authorization failed");
    assert!(t.elapsed() >= Duration::from_secs(2), "a refused login waits: {:?}", t.elapsed());
    assert_eq!(poplib(port, "kim", "").trim(), "ERR -ERR syntax error", "empty PASS");
    assert_eq!(poplib(port, "off", PASSWORD).trim(), "ERR -ERR account disabled");
}

/// POP-before-SMTP: a POP3 login (auth_pop -d pbsadd) lets that address relay through
/// pbscheck and qmail-smtpd until pbstimeout passes; with a wrong pbssecret on the POP side
/// nothing is allowed.
#[test]
fn pop_before_smtp_end_to_end() {
    let server = slapd::shared();
    let d = Dir::on(server, "logins-pbs");
    let pw = qmail::passwd::ssha(PASSWORD.as_bytes(), b"12345678");
    d.user(server, "joe", &format!("userPassword: {pw}"));
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let sb = &d.sb;
    sb.control("rcpthosts", "example.org\n");
    sb.control("pbsservers", "127.0.0.1\n");
    sb.control("pbsport", &format!("{udp}\n"));
    sb.control("pbsip", "127.0.0.1\n");
    sb.control("pbssecret", "the right secret\n");
    sb.control("pbstimeout", "3\n");
    let mut pbsdbd = sb.cmd("pbsdbd");
    if is_root() {
        use std::os::unix::process::CommandExt;
        pbsdbd.uid(65534).gid(65534);
    }
    let _pbsdbd = Guard(pbsdbd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    // the POP side: a second root with the same directory and servers
    let pop = Sandbox::for_delivery();
    for f in ["ldapserver", "ldapbasedn", "ldaplogin", "ldappassword", "pbsservers", "pbsport"] {
        fs::copy(sb.home.join("control").join(f), pop.home.join("control").join(f)).unwrap();
    }
    pop.control("pbssecret", "the right secret\n");
    let (_pop, pop_port) = pop3_server(&pop, true);
    // the SMTP side: pbscheck in front of qmail-smtpd
    let smtp_port = free_port();
    let mut cmd = Command::new("tcpserver");
    for k in ["RELAYCLIENT", "NOPBS", "SMTPAUTH", "QMAILQUEUE"] {
        cmd.env_remove(k);
    }
    cmd.env("QMAILHOME", &sb.home);
    if is_root() {
        cmd.args(["-u", "65534", "-g", "65534"]);
    }
    cmd.args(["-HRl0", "127.0.0.1", &smtp_port.to_string()]);
    cmd.arg(bin("pbscheck")).arg(bin("qmail-smtpd"));
    let _smtpd = tcpserver_ready(&mut cmd, smtp_port);
    let relay = || -> bool {
        let out: Output = Command::new("swaks")
            .args(["--server", &format!("127.0.0.1:{smtp_port}")])
            .args([
                "--from",
                "joe@example.org",
                "--to",
                "x@elsewhere.example",
                "--quit-after",
                "RCPT",
            ])
            .output()
            .expect("swaks must be installed");
        code(&out) == 0
    };
    assert!(!relay(), "no relaying before a POP login");
    // a wrong secret on the POP side: the login works, the relaying does not come
    pop.control("pbssecret", "a wrong secret\n");
    assert_eq!(poplib(pop_port, "joe", PASSWORD), "0\n");
    assert!(!relay(), "a wrong pbssecret allows nothing");
    pop.control("pbssecret", "the right secret\n");
    assert_eq!(poplib(pop_port, "joe", PASSWORD), "0\n");
    assert!(wait_until(Duration::from_secs(10), relay), "relaying after the POP login");
    assert!(wait_until(Duration::from_secs(30), || !relay()), "refused again after pbstimeout");
}

/// The README's "Logging in" on `qmailctl run`: `qmailctl passwd` and `qmailctl
/// tls-selfsigned`, then a user fetches mail with poplib on the POP3 listener and sends with
/// STARTTLS and AUTH on the submission listener (without AUTH: 530).
#[test]
fn readme_logging_in_on_qmailctl_run() {
    let sb = Sandbox::for_delivery();
    let (uid, gid, kim) = sb.user_home("kim");
    sb.assign(&[("kim", uid, gid, &kim)]);
    let home = sb.home.to_str().unwrap().to_string();
    let out =
        sb.run("qmailctl", &["passwd", "--home", &home, "kim", "--password-stdin"], b"kim pw\n");
    assert_ok(&out, "qmailctl passwd");
    assert_ok(&sb.run("qmailctl", &["tls-selfsigned", "--home", &home], b""), "tls-selfsigned");
    let (pop, sub) = (free_port(), free_port());
    let (pop_addr, sub_addr) = (format!("127.0.0.1:{pop}"), format!("127.0.0.1:{sub}"));
    let run = sb.start_with(&[
        "--listen",
        "off",
        "--smtps",
        "off",
        "--pop3s",
        "off",
        "--pop3",
        &pop_addr,
        "--submission",
        &sub_addr,
    ]);
    for addr in [&pop_addr, &sub_addr] {
        assert!(
            wait_until(Duration::from_secs(30), || TcpStream::connect(addr.as_str()).is_ok()),
            "{addr} did not come up; log:\n{}",
            run.log_text()
        );
    }
    // send with AUTH on the submission port
    let script = r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=30)
s.starttls(context=ctx)
try:
    s.sendmail("kim@example.org", ["kim@example.org"], b"Subject: no\r\n\r\nx\r\n")
    print("sent without AUTH")
except smtplib.SMTPSenderRefused as e:
    print("refused", e.smtp_code)
s.login("kim", "kim pw")
s.sendmail("kim@example.org", ["kim@example.org"], b"Subject: by submission\r\n\r\nsent with AUTH\r\n")
s.quit()
"#;
    let out = Command::new("python3").args(["-c", script, &sub.to_string()]).output().unwrap();
    assert_ok(&out, "python3 smtplib submission");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "refused 530\n");
    assert!(
        wait_until(Duration::from_secs(60), || Sandbox::maildir_new(&kim).len() == 1),
        "not delivered; log:\n{}",
        run.log_text()
    );
    // and fetch it with poplib (a message is listed from the second after its delivery on)
    let mut got = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            got = poplib(pop, "kim", "kim pw");
            got.starts_with("1\n")
        }),
        "{got}; log:\n{}",
        run.log_text()
    );
    assert!(got.contains("Subject: by submission") && got.contains("sent with AUTH"), "{got}");
    assert_eq!(poplib(pop, "kim", "kim pw"), "0\n");
}

/// The directory lookup of auth_pop runs unprivileged (as the root's owner, here nobody),
/// not as root: with `ldappassword` readable by root only, root could log joe in, the lookup
/// cannot, and the login fails as a configuration error rather than succeeding.
#[test]
fn auth_pop_looks_up_without_privileges() {
    assert!(is_root(), "this test needs root, as auth_pop does");
    let server = slapd::shared();
    let d = Dir::on(server, "logins-unpriv");
    let pw = qmail::passwd::ssha(PASSWORD.as_bytes(), b"12345678");
    d.user(server, "joe", &format!("userPassword: {pw}"));
    let (_server, port) = pop3_server(&d.sb, false);
    assert_eq!(poplib(port, "joe", PASSWORD), "0\n", "the lookup user reads ldappassword");
    let secret = d.sb.home.join("control/ldappassword");
    std::os::unix::fs::chown(&secret, Some(0), Some(0)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let got = poplib(port, "joe", PASSWORD);
    assert!(got.starts_with("ERR -ERR "), "root's view was not used: {got}");
    assert!(!got.contains("authorization failed"), "never a wrong password: {got}");
}
