//! qmail-smtpd's SMTP AUTH (RFC 4954; doc/qmail-smtpd.8, "SMTP AUTH"): the mechanisms LOGIN
//! and PLAIN, and the checker `bin/auth_smtp` (doc/auth_smtp.8) that decides.
//!
//! The exchange gathers the client's base64 strings as they came; auth_smtp gets them
//! unchanged on its standard input and answers on its standard output, in the protocol of
//! [`qmail::auth::smtp`] (both ends use it). It runs without a shell or a command line built
//! from client data, once per AUTH, within [`CHECK_TIMEOUT`]; its answer is bounded.

use qmail::auth::smtp::{self, Answer};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// How long auth_smtp may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// The most bytes of auth_smtp's answer read.
const ANSWER_MAX: usize = 1024;

/// A mechanism this server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Login,
    Plain,
}

impl Mechanism {
    /// The mechanism named by the first word of AUTH's argument, any case.
    pub fn parse(word: &[u8]) -> Option<Mechanism> {
        if word.eq_ignore_ascii_case(b"LOGIN") {
            Some(Mechanism::Login)
        } else if word.eq_ignore_ascii_case(b"PLAIN") {
            Some(Mechanism::Plain)
        } else {
            None
        }
    }
}

/// The longest line of the exchange (RFC 4954's limit for an AUTH line).
pub const LINE_MAX: usize = 12288;

/// How long a failed AUTH waits before its reply and after it (doc/qmail-smtpd.8, "SMTP
/// AUTH"). The tests' build can shorten them (`QMAILSMTPD_TEST_AUTHDELAY`, milliseconds).
pub fn failure_delays() -> (Duration, Duration) {
    #[cfg(feature = "test-hooks")]
    if let Some(ms) = std::env::var("QMAILSMTPD_TEST_AUTHDELAY").ok().and_then(|v| v.parse().ok()) {
        return (Duration::from_millis(ms), Duration::from_millis(ms));
    }
    (Duration::from_secs(1), Duration::from_secs(4))
}

/// The EHLO keyword line's mechanisms.
pub const OFFERED: &str = "AUTH LOGIN PLAIN";

/// `AUTH mechanism [initial-response]`: the mechanism word and the initial response, if any.
/// An initial response of `=` stands for an empty one (RFC 4954).
pub fn split_arg(arg: &[u8]) -> (&[u8], Option<&[u8]>) {
    let arg = arg.trim_ascii();
    match arg.iter().position(|b| *b == b' ') {
        None => (arg, None),
        Some(i) => {
            let rest = arg[i + 1..].trim_ascii();
            (&arg[..i], Some(if rest == b"=" { &b""[..] } else { rest }))
        }
    }
}

/// The request for auth_smtp: the mechanism's fields as the client sent them.
pub fn request(mech: Mechanism, fields: &[Zeroizing<Vec<u8>>]) -> Zeroizing<Vec<u8>> {
    match (mech, fields) {
        (Mechanism::Login, [user, password]) => smtp::login_request(user, password),
        (Mechanism::Plain, [response]) => smtp::plain_request(response),
        _ => unreachable!("the exchange gathers one field per prompt"),
    }
}

/// Run `home/bin/auth_smtp` with `request` on its standard input: its answer, or why there
/// is none (a temporary failure).
pub fn check(home: &Path, request: &[u8]) -> Result<Answer, String> {
    let deadline = Instant::now() + CHECK_TIMEOUT;
    let mut child = match Command::new(home.join("bin/auth_smtp"))
        .current_dir(home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Err(format!("unable to run bin/auth_smtp: {e}")),
    };
    let mut stdin = child.stdin.take().expect("stdin was piped");
    let stdout = child.stdout.take().expect("stdout was piped");
    // the request is small: one write fills no pipe; a checker that does not read gets EPIPE
    let _ = stdin.write_all(request);
    drop(stdin);
    qmail::timeoutio::set_nonblocking(&stdout);
    let mut answer = Vec::new();
    let mut buf = [0u8; 256];
    let mut timed_out = false;
    while answer.len() < ANSWER_MAX {
        match qmail::timeoutio::read_by(stdout.as_fd(), &mut buf, deadline) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                timed_out = true;
                break;
            }
            Err(_) => break,
        }
    }
    if timed_out {
        let _ = child.kill();
    }
    let status = child.wait();
    if timed_out {
        return Err("bin/auth_smtp timed out".into());
    }
    match status {
        Ok(status) => Answer::of_run(status, &answer)
            .ok_or_else(|| format!("bin/auth_smtp gave no answer ({status})")),
        Err(e) => Err(format!("bin/auth_smtp: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        assert_eq!(split_arg(b"PLAIN"), (&b"PLAIN"[..], None));
        assert_eq!(
            split_arg(b"plain AGpvZQBzZWNyZXQ="),
            (&b"plain"[..], Some(&b"AGpvZQBzZWNyZXQ="[..]))
        );
        assert_eq!(split_arg(b"LOGIN ="), (&b"LOGIN"[..], Some(&b""[..])));
        assert_eq!(split_arg(b" LOGIN  am9l "), (&b"LOGIN"[..], Some(&b"am9l"[..])));
        assert_eq!(Mechanism::parse(b"login"), Some(Mechanism::Login));
        assert_eq!(Mechanism::parse(b"CRAM-MD5"), None);
        let z = |b: &[u8]| Zeroizing::new(b.to_vec());
        let login = request(Mechanism::Login, &[z(b"am9l"), z(b"c2VjcmV0")]);
        assert_eq!(&login[..], b"login\0am9l\0c2VjcmV0\0");
        assert_eq!(&request(Mechanism::Plain, &[z(b"AGpvZQBz")])[..], b"plain\0AGpvZQBz\0");
    }
}
