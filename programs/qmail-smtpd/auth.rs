//! qmail-smtpd's SMTP AUTH (RFC 4954; doc/qmail-smtpd.8, "SMTP AUTH"): the mechanisms LOGIN
//! and PLAIN, and the checker `bin/auth_smtp` (doc/auth_smtp.8) that decides.
//!
//! The exchange gathers the client's base64 strings as they came; auth_smtp gets them
//! unchanged (`login\0USER\0PASSWORD\0` or `plain\0RESPONSE\0`, fields base64) on its
//! standard input and answers on its standard output: `K` and the login name and a NUL
//! (accepted), `D` (refused), `Z` (the exchange was malformed), or exits 111 with nothing
//! (trouble). It runs without a shell or a command line built from client data, once per
//! AUTH, within [`CHECK_TIMEOUT`]; its answer is bounded.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long auth_smtp may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// The most bytes of auth_smtp's answer read.
const ANSWER_MAX: usize = 1024;
/// The longest login name taken from auth_smtp's answer.
const LOGIN_MAX: usize = 256;

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

/// The longest line of the exchange: a PLAIN response of a 255-byte name and a 1000-byte
/// password, base64, with room to spare.
pub const LINE_MAX: usize = 2048;

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

/// The request for auth_smtp.
pub fn request(mech: Mechanism, fields: &[&[u8]]) -> Vec<u8> {
    let mut r = match mech {
        Mechanism::Login => b"login\0".to_vec(),
        Mechanism::Plain => b"plain\0".to_vec(),
    };
    for f in fields {
        r.extend_from_slice(f);
        r.push(0);
    }
    r
}

/// What auth_smtp said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// accepted: the login name
    Accepted(String),
    /// wrong name or password
    Refused,
    /// the account exists but may not log in (doc/DECISIONS.md)
    Disabled,
    /// the exchange was malformed (bad base64, a missing field)
    Malformed,
    /// auth_smtp could not decide (directory down, time-out, no checker): why, for the log
    Trouble(String),
}

/// Run `home/bin/auth_smtp` with `request` on its standard input.
pub fn check(home: &Path, request: &[u8]) -> Outcome {
    let deadline = Instant::now() + CHECK_TIMEOUT;
    let mut child = match Command::new(home.join("bin/auth_smtp"))
        .current_dir(home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Outcome::Trouble(format!("unable to run bin/auth_smtp: {e}")),
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
        return Outcome::Trouble("bin/auth_smtp timed out".into());
    }
    let code = match status {
        Ok(s) => s.code(),
        Err(_) => None,
    };
    interpret(code, &answer)
}

/// auth_smtp's exit code (`None`: killed by a signal) and answer, as an outcome.
pub fn interpret(code: Option<i32>, answer: &[u8]) -> Outcome {
    if code != Some(0) {
        return Outcome::Trouble(match code {
            Some(c) => format!("bin/auth_smtp exited {c}"),
            None => "bin/auth_smtp was killed".into(),
        });
    }
    match answer.first() {
        Some(b'K') => {
            let rest = &answer[1..];
            let Some(end) = rest.iter().position(|b| *b == 0) else {
                return Outcome::Trouble("bin/auth_smtp: no NUL after the login".into());
            };
            let login = &rest[..end];
            if login.is_empty()
                || login.len() > LOGIN_MAX
                || login.iter().any(|b| b.is_ascii_control())
                || std::str::from_utf8(login).is_err()
            {
                return Outcome::Trouble("bin/auth_smtp: an unusable login name".into());
            }
            Outcome::Accepted(String::from_utf8_lossy(login).into_owned())
        }
        Some(b'D') if answer.get(1) == Some(&b'd') => Outcome::Disabled,
        Some(b'D') => Outcome::Refused,
        Some(b'Z') => Outcome::Malformed,
        _ => Outcome::Trouble("bin/auth_smtp gave no answer".into()),
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
        assert_eq!(request(Mechanism::Login, &[b"am9l", b"c2VjcmV0"]), b"login\0am9l\0c2VjcmV0\0");
        assert_eq!(request(Mechanism::Plain, &[b"AGpvZQBz"]), b"plain\0AGpvZQBz\0");
    }

    #[test]
    fn answers() {
        assert_eq!(interpret(Some(0), b"Kjoe\0"), Outcome::Accepted("joe".into()));
        assert_eq!(interpret(Some(0), b"D"), Outcome::Refused);
        assert_eq!(interpret(Some(0), b"Dd"), Outcome::Disabled);
        assert_eq!(interpret(Some(0), b"Z"), Outcome::Malformed);
        for (code, answer) in [
            (Some(111), &b""[..]),
            (Some(0), b""),
            (None, b"Kjoe\0"),
            (Some(0), b"Kjoe"),
            (Some(0), b"K\0"),
            (Some(0), b"Kjo\ne\0"),
            (Some(0), b"X"),
            (Some(1), b"Kjoe\0"),
        ] {
            assert!(matches!(interpret(code, answer), Outcome::Trouble(_)), "{code:?} {answer:?}");
        }
    }
}
