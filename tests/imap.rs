//! imapd under ucspi-tcp's tcpserver: Python's imaplib over every command, the login rules
//! (LOGINDISABLED, STARTTLS, `-s`, AUTHENTICATE PLAIN), two sessions and deliveries seeing
//! each other, hostile input, `msg/motd`, `msg/shutdown`, `log/USER`, SIGTERM, and large
//! mailboxes and messages in flat memory.

use crate::harness::imap::{Client, Imapd, PASS, USER};
use crate::harness::{assert_ok, pids_of, wait_until};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

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
    let mut cmd = std::process::Command::new("setpriv");
    if crate::harness::is_root() {
        cmd.args([
            &format!("--reuid={}", imapd.uid),
            &format!("--regid={}", imapd.gid),
            "--clear-groups",
        ]);
    }
    let home = imapd.home.to_str().unwrap();
    cmd.arg(crate::harness::bin("qmail-local"))
        .args(["--", USER, home, USER, "", "", "example.org", "sender@example.org", "./Maildir/"])
        .env("QMAILHOME", &imapd.sb.home);
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
