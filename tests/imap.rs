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
