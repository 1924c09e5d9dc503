//! The login programs against a real slapd and real files: auth_smtp's answers (every row of
//! its table in doc/auth_smtp.8) for directory users, `users/passwd` users, hostile login
//! names, malformed and over-long requests, the directory stopped or frozen; auth_pop's exit
//! codes (doc/auth_pop.8) and the environment, directory and uid its sub-program runs with;
//! auth_imap's hand-over to the next module. Running as root (as CI does), auth_smtp runs as
//! nobody, as qmaild would, and auth_pop and auth_imap as root, as under qmail-popup.

use crate::harness::slapd::{self, Slapd};
use crate::harness::*;
use crate::ldap_deliver::Dir;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use qmail::auth::smtp::{login_request, plain_request, Answer};
use std::fs;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

const PW: &str = "sesame";

fn b64(s: &[u8]) -> Vec<u8> {
    BASE64.encode(s).into_bytes()
}

/// `userPassword` of [`PW`] as `{SSHA}`.
fn ssha(pw: &str) -> String {
    qmail::passwd::ssha(pw.as_bytes(), b"saltsalt")
}

/// Run `cmd` as nobody when running as root.
fn unprivileged(cmd: &mut Command) -> &mut Command {
    if is_root() {
        cmd.uid(65534).gid(65534);
    }
    cmd
}

/// auth_smtp on `sb` with `request` on stdin.
fn smtp(sb: &Sandbox, request: &[u8]) -> Output {
    let mut cmd = sb.cmd("auth_smtp");
    run_with(unprivileged(&mut cmd), request)
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\0', "\\0")
}

/// auth_smtp's answer to an AUTH LOGIN with `user` and `pw`, checked to come with exit 0.
fn login(sb: &Sandbox, user: &[u8], pw: &[u8]) -> Answer {
    answer(&smtp(sb, &login_request(&b64(user), &b64(pw))))
}

/// The answer of a run that must have given one.
fn answer(out: &Output) -> Answer {
    assert_eq!(code(out), 0, "stdout {}\nstderr {}", show(&out.stdout), show(&out.stderr));
    Answer::decode(&out.stdout).unwrap_or_else(|| panic!("not an answer: {}", show(&out.stdout)))
}

/// A run that must have failed temporarily: no answer, exit 111.
fn temporary(out: &Output) {
    assert_eq!(code(out), 111, "stdout {}\nstderr {}", show(&out.stdout), show(&out.stderr));
    assert!(out.stdout.is_empty(), "answered {}", show(&out.stdout));
}

fn ok(name: &str) -> Answer {
    Answer::Ok(name.as_bytes().to_vec())
}

/// A directory of users with passwords: `ann` (active), `nop` (nopop), and `noacc`, `dis`,
/// `del`, `odd` (noaccess, disabled, deleted, an unknown word).
fn people(s: &Slapd, name: &str) -> Dir {
    let d = Dir::on(s, name);
    let pw = format!("userPassword: {}", ssha(PW));
    d.user(s, "ann", &pw);
    for (user, status) in [
        ("nop", "nopop"),
        ("noacc", "noaccess"),
        ("dis", "disabled"),
        ("del", "deleted"),
        ("odd", "frozen"),
    ] {
        d.user(s, user, &format!("{pw}\naccountStatus: {status}"));
    }
    d
}

#[test]
fn auth_smtp_directory_users() {
    let s = slapd::shared();
    let d = people(s, "as-dir");
    let sb = &d.sb;
    assert_eq!(login(sb, b"ann", PW.as_bytes()), ok("ann"));
    // the directory matches uid without regard to case; K names the entry's uid
    assert_eq!(login(sb, b"ANN", PW.as_bytes()), ok("ann"));
    let plain = plain_request(&b64(format!("\0ann\0{PW}").as_bytes()));
    assert_eq!(answer(&smtp(sb, &plain)), ok("ann"));
    let plain = plain_request(&b64(format!("someone\0ann\0{PW}").as_bytes()));
    assert_eq!(answer(&smtp(sb, &plain)), ok("ann"), "the authzid is ignored");
    assert_eq!(login(sb, b"ann", b"wrong"), Answer::Failed);
    assert_eq!(login(sb, b"ann", b""), Answer::Failed, "empty password");
    assert_eq!(login(sb, b"nobody-here", PW.as_bytes()), Answer::Failed, "unknown user");
    assert_eq!(login(sb, b"nop", PW.as_bytes()), ok("nop"), "nopop allows SMTP AUTH");
    for user in ["noacc", "dis", "del", "odd"] {
        assert_eq!(login(sb, user.as_bytes(), PW.as_bytes()), Answer::Disabled, "{user}");
        // the status is told only to who knows the password
        assert_eq!(login(sb, user.as_bytes(), b"wrong"), Answer::Failed, "{user}");
    }
    assert_eq!(Answer::Disabled.encode(), b"Ddisabled\0");
}

#[test]
fn auth_smtp_hostile_login_names() {
    let s = slapd::shared();
    let d = people(s, "as-hostile");
    let sb = &d.sb;
    for name in [&b"*"[..], b"a*", b"*)(uid=*", b")(", b"ann)(uid=*", b"ann\0", b"\0", b"ann\\"] {
        assert_eq!(login(sb, name, PW.as_bytes()), Answer::Failed, "{}", show(name));
    }
    // a PLAIN response can carry no NUL in the login; more NULs go to the password
    let plain = plain_request(&b64(format!("\0ann\0{PW}\0x").as_bytes()));
    assert_eq!(answer(&smtp(sb, &plain)), Answer::Failed);
}

#[test]
fn auth_smtp_malformed_requests() {
    let sb = Sandbox::for_delivery();
    for req in [
        &b"login\0am9l!\0c2VzYW1l\0"[..],
        b"login\0am9\0c2VzYW1l\0",
        b"cram-md5\0x\0",
        b"plain\0am9l\0",
        b"login\0am9l\0c2VzYW1l\0extra",
        b"login\0am9l\0",
        b"",
    ] {
        assert_eq!(answer(&smtp(&sb, req)), Answer::Malformed, "{}", show(req));
    }
    // a 1 MB base64 line: refused without reading it all in, and read to its end
    let big = login_request(&vec![b'A'; 1 << 20], &b64(PW.as_bytes()));
    assert_eq!(answer(&smtp(&sb, &big)), Answer::Malformed);
    // arguments are a configuration error
    let mut cmd = sb.cmd("auth_smtp");
    cmd.arg("-x");
    temporary(&run_with(unprivileged(&mut cmd), &login_request(b"am9l", b"c2VzYW1l")));
}

#[test]
fn auth_smtp_users_passwd() {
    let sb = Sandbox::for_delivery();
    let file = sb.home.join("users/passwd");
    fs::write(&file, format!("# test\njoe:{}\nbob:{{SHA}}broken\n", ssha(PW))).unwrap();
    assert_eq!(login(&sb, b"joe", PW.as_bytes()), ok("joe"));
    assert_eq!(login(&sb, b"joe", b"wrong"), Answer::Failed);
    assert_eq!(login(&sb, b"JOE", PW.as_bytes()), Answer::Failed, "matched exactly");
    assert_eq!(login(&sb, b"ann", PW.as_bytes()), Answer::Failed);
    assert_eq!(login(&sb, b"bob", PW.as_bytes()), Answer::Malformed, "a damaged value");
    // the system's passwd is never used for SMTP AUTH
    assert_eq!(login(&sb, b"root", PW.as_bytes()), Answer::Failed);
    // a malformed line spoils the file: temporary
    fs::write(&file, format!("joe:{}\nbroken line\n", ssha(PW))).unwrap();
    temporary(&smtp(&sb, &login_request(&b64(b"joe"), &b64(PW.as_bytes()))));
}

#[test]
fn auth_smtp_directory_then_users_passwd() {
    let s = slapd::shared();
    let d = people(s, "as-chain");
    let sb = &d.sb;
    fs::write(
        sb.home.join("users/passwd"),
        format!("joe:{}\nann:{}\n", ssha("filepw"), ssha("filepw")),
    )
    .unwrap();
    assert_eq!(login(sb, b"joe", b"filepw"), ok("joe"), "not in the directory");
    assert_eq!(login(sb, b"ann", b"filepw"), Answer::Failed, "a directory password is final");
    assert_eq!(login(sb, b"ann", PW.as_bytes()), ok("ann"));
    sb.control("ldaplocaldelivery", "0\n");
    assert_eq!(login(sb, b"joe", b"filepw"), Answer::Failed, "no local fallback");
}

#[test]
fn auth_smtp_rebind_and_schemes() {
    let s = slapd::shared();
    let d = Dir::on(s, "as-rebind");
    let sb = &d.sb;
    d.user(s, "ssha", &format!("userPassword: {}", ssha(PW)));
    // a scheme only the server checks: a bind as the entry decides
    d.user(s, "clear", &format!("userPassword: {PW}"));
    d.user(s, "broken", "userPassword: {SSHA}!!notbase64");
    d.user(s, "none", "");
    assert_eq!(login(sb, b"ssha", PW.as_bytes()), ok("ssha"));
    assert_eq!(login(sb, b"clear", PW.as_bytes()), ok("clear"));
    assert_eq!(login(sb, b"clear", b"wrong"), Answer::Failed);
    assert_eq!(login(sb, b"broken", PW.as_bytes()), Answer::Malformed);
    assert_eq!(login(sb, b"none", PW.as_bytes()), Answer::Failed);
    sb.control("ldaprebind", "1\n");
    assert_eq!(login(sb, b"ssha", PW.as_bytes()), ok("ssha"));
    assert_eq!(login(sb, b"ssha", b"wrong"), Answer::Failed);
    assert_eq!(login(sb, b"broken", PW.as_bytes()), Answer::Failed, "the server decides");
    assert_eq!(login(sb, b"ssha", b""), Answer::Failed, "never an anonymous bind");
}

#[test]
fn auth_smtp_two_entries_are_temporary() {
    let s = slapd::shared();
    let d = Dir::on(s, "as-two");
    let sb = &d.sb;
    d.user(s, "twin", &format!("userPassword: {}", ssha(PW)));
    s.add(&format!(
        "dn: cn=other,{}\nobjectClass: inetOrgPerson\nobjectClass: qmailUser\ncn: other\n\
         sn: other\nuid: twin\nmail: other@example.org\nuserPassword: {}\n",
        d.ou,
        ssha(PW)
    ));
    temporary(&smtp(sb, &login_request(&b64(b"twin"), &b64(PW.as_bytes()))));
}

#[test]
fn auth_smtp_directory_down_is_temporary() {
    let sb = Sandbox::for_delivery();
    sb.control("ldapserver", &format!("127.0.0.1:{}\n", free_port()));
    sb.control("ldapbasedn", "dc=example,dc=org\n");
    let out = smtp(&sb, &login_request(&b64(b"ann"), &b64(PW.as_bytes())));
    temporary(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unreachable"), "{}", show(&out.stderr));
    // an empty password fails before anything is looked up
    assert_eq!(login(&sb, b"ann", b""), Answer::Failed);
}

#[test]
fn auth_smtp_slapd_stopped_and_frozen() {
    // a private slapd: stopping or freezing the shared one would stall the other tests
    let server = Slapd::new();
    let d = people(&server, "as-fault");
    let sb = &d.sb;
    sb.control("ldaptimeout", "1\n");
    assert_eq!(login(sb, b"ann", PW.as_bytes()), ok("ann"));
    server.pause();
    let started = std::time::Instant::now();
    let out = smtp(sb, &login_request(&b64(b"ann"), &b64(PW.as_bytes())));
    server.resume();
    temporary(&out);
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
    assert_eq!(login(sb, b"ann", PW.as_bytes()), ok("ann"));
    server.stop();
    temporary(&smtp(sb, &login_request(&b64(b"ann"), &b64(PW.as_bytes()))));
    server.start();
    assert_eq!(login(sb, b"ann", PW.as_bytes()), ok("ann"));
}
