//! auth_smtp: check one SMTP AUTH login for qmail-smtpd (doc/auth_smtp.8).
//!
//! qmail-smtpd runs it once per AUTH command, with no arguments: the request on fd 0, the
//! answer on fd 1 ([`qmail::auth::smtp`]: `K<name>\0`, `D`, `Ddisabled\0` or `Z`, then exit
//! 0), the log on fd 2. Without an answer it exits 111: a temporary failure (the directory
//! down or slow, several entries, an unreadable file; doc/DECISIONS.md, 2).
//!
//! The login is decided by [`qmail::auth::authenticate`] for [`Service::Smtp`]: the
//! directory, then `users/passwd`; never the system's passwd.
//!
//! Security: the request is bounded ([`qmail::auth::smtp::REQUEST_MAX`]); its buffer and the
//! password are wiped after use, and no password is ever logged. It runs as qmail-smtpd's
//! user, which must be able to read `control/ldappassword` and `users/passwd`.

#![forbid(unsafe_code)]

use qmail::auth::smtp::{self, Answer, Malformed, REQUEST_MAX};
use qmail::auth::{self, Credentials, Failure, Service};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

const EXIT_TEMP: u8 = 111;
/// How long the rest of a refused request is read (and dropped) after the answer, so that a
/// qmail-smtpd still writing it does not meet a closed pipe.
const DRAIN_TIME: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    if std::env::args_os().len() > 1 {
        log("usage: auth_smtp (no arguments)");
        return ExitCode::from(EXIT_TEMP);
    }
    let home = qmail::auto::home();
    let mut stdin = io::stdin().lock();
    let request = match read_request(&mut stdin) {
        Ok(r) => r,
        Err(e) => {
            log(&format!("unable to read the request: {e}"));
            return ExitCode::from(EXIT_TEMP);
        }
    };
    let answer = match request {
        Err(Malformed(why)) => {
            log(&format!("malformed request: {why}"));
            Answer::Malformed
        }
        Ok(creds) => match decide(&home, &creds) {
            Some(answer) => answer,
            None => return ExitCode::from(EXIT_TEMP),
        },
    };
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(&answer.encode()).and_then(|()| out.flush()) {
        log(&format!("unable to answer: {e}"));
        return ExitCode::from(EXIT_TEMP);
    }
    if answer == Answer::Malformed {
        drain(&mut stdin);
    }
    ExitCode::SUCCESS
}

/// The answer for one login, or `None` for a temporary failure (logged).
fn decide(home: &std::path::Path, creds: &Credentials) -> Option<Answer> {
    let who = qmail::safe::printable(&creds.login[..creds.login.len().min(64)], '?');
    match auth::authenticate(home, Service::Smtp, creds) {
        Ok(login) => Some(Answer::Ok(login.name.into_bytes())),
        Err(Failure::NoSuchUser | Failure::BadPassword) => Some(Answer::Failed),
        Err(f @ Failure::Disabled(_)) => {
            log(&format!("{who}: {f}"));
            Some(Answer::Disabled)
        }
        Err(f @ Failure::BadRecord(_)) => {
            log(&format!("{who}: {f}"));
            Some(Answer::Malformed)
        }
        Err(f) => {
            log(&format!("{who}: {f}"));
            None
        }
    }
}

/// Read fd 0 until it holds one whole request; end of input inside it, or more than
/// [`REQUEST_MAX`] bytes, is [`Malformed`].
fn read_request(input: &mut impl Read) -> io::Result<Result<Credentials, Malformed>> {
    // allocated once, big enough never to move: no copy of a password is left behind
    let mut buf = Zeroizing::new(Vec::with_capacity(REQUEST_MAX + 4096));
    let mut chunk = Zeroizing::new([0u8; 4096]);
    loop {
        match smtp::credentials(&buf) {
            Ok(Some(creds)) => return Ok(Ok(creds)),
            Err(m) => return Ok(Err(m)),
            Ok(None) => {}
        }
        let n = qmail::timeoutio::read(input, &mut chunk[..])?;
        if n == 0 {
            return Ok(Err(Malformed("end of input inside the request")));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Read and drop fd 0 until its end, for at most [`DRAIN_TIME`].
fn drain(stdin: &mut io::StdinLock<'_>) {
    let deadline = Instant::now() + DRAIN_TIME;
    let mut chunk = [0u8; 8192];
    while let Ok(n) = qmail::timeoutio::read_by(stdin.as_fd(), &mut chunk, deadline) {
        if n == 0 {
            break;
        }
    }
}

fn log(text: &str) {
    qmail::log::line(format_args!("auth_smtp: {text}"));
}
