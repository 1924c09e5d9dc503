//! The whole system from the outside: SMTP in through qmail-tcpsrv and qmail-smtpd, delivered
//! by the local pipeline into a Maildir; and the README's first command on a fresh root.

use crate::harness::*;
use std::fs;
use std::process::Command;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// Send one message with Python's smtplib.
fn smtplib(port: u16, from: &str, to: &[&str], body: &str) {
    let script = format!(
        "import smtplib\ns = smtplib.SMTP('127.0.0.1', {port}, timeout=30)\n\
         s.ehlo('client.example')\ns.sendmail({from:?}, {to:?}, {body:?})\ns.quit()\n"
    );
    let out = Command::new("python3").arg("-c").arg(&script).output().unwrap();
    assert_ok(&out, "python3 smtplib");
}

#[test]
fn smtp_in_to_maildir() {
    let sb = Sandbox::for_delivery();
    let (uid, gid, home) = sb.user_home("kim");
    sb.assign(&[("kim", uid, gid, &home)]);
    let (run, port) = sb.start_smtp();
    smtplib(
        port,
        "sender@example.net",
        &["kim@example.org"],
        "Subject: via smtp\r\n\r\nhello kim\r\n",
    );
    assert!(
        wait_until(LONG, || Sandbox::maildir_new(&home).len() == 1),
        "not delivered; log:\n{}",
        run.log_text()
    );
    let text = fs::read_to_string(&Sandbox::maildir_new(&home)[0]).unwrap();
    assert!(
        text.starts_with("Return-Path: <sender@example.net>\nDelivered-To: kim@example.org\n"),
        "{text}"
    );
    assert!(text.contains("Received: from "), "qmail-smtpd's Received line: {text}");
    assert!(text.contains("Subject: via smtp\n") && text.ends_with("hello kim\n"), "{text}");
    let status = run.stop();
    assert!(status.success(), "{status}");
}

#[test]
fn readme_first_command_on_a_fresh_root() {
    let tmp = TempDir::new("readme");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let home = tmp.path().join("qmail-demo");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(bin("qmailctl"))
        .args(["run", "--listen", &addr, "--home"])
        .arg(&home)
        .env_remove("QMAILHOME")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let up = wait_until(LONG, || std::net::TcpStream::connect(&addr).is_ok());
    if up {
        smtplib(port, "you@example.org", &["demo@localhost"], "Subject: hello\n\nIt works.\n");
    }
    let maildir = home.join("demo/Maildir/new");
    let arrived =
        up && wait_until(LONG, || fs::read_dir(&maildir).map(|d| d.count() == 1).unwrap_or(false));
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let status = child.wait().unwrap();
    assert!(up, "no listener on {addr}");
    assert!(arrived, "the sample message did not arrive in {}", maildir.display());
    assert!(status.success(), "qmailctl run after TERM: {status}");
}
